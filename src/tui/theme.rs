//! Colours, and the monochrome theme used with `NO_COLOR`. State is never
//! carried by colour alone (every state has a word and a glyph), so the
//! monochrome theme only swaps colours for bold, reverse and underline.

use ratatui::style::{Color, Modifier, Style};

use crate::health::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub mono: bool,
}

impl Theme {
    pub const COLOR: Theme = Theme { mono: false };
    pub const MONO: Theme = Theme { mono: true };

    /// `NO_COLOR` set to anything non-empty selects the monochrome theme.
    pub fn from_env(no_color: Option<&str>) -> Theme {
        match no_color {
            Some(v) if !v.is_empty() => Theme::MONO,
            _ => Theme::COLOR,
        }
    }

    fn pick(&self, color: Style, mono: Style) -> Style {
        if self.mono {
            mono
        } else {
            color
        }
    }

    /// The style of a job row by its primary state (SPEC §5: overdue red,
    /// late yellow, running highlighted, paused dim).
    pub fn state(&self, state: State) -> Style {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        match state {
            State::Overdue | State::Unreadable => self.pick(
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                bold.add_modifier(Modifier::UNDERLINED),
            ),
            State::Late => self.pick(Style::default().fg(Color::Yellow), bold),
            State::Failing => self.pick(Style::default().fg(Color::Magenta), Style::default()),
            State::Running => self.pick(
                Style::default()
                    .fg(Color::Cyan)
                    .add_modifier(Modifier::BOLD),
                bold,
            ),
            State::Paused | State::Done => self.pick(
                Style::default().fg(Color::DarkGray),
                Style::default().add_modifier(Modifier::DIM),
            ),
            State::Ok => Style::default(),
        }
    }

    /// The row under the cursor: reversed, so it keeps its state colour.
    pub fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    pub fn title(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    pub fn column_header(&self) -> Style {
        self.pick(
            Style::default()
                .fg(Color::Blue)
                .add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
        )
    }

    /// Loud: READ-ONLY, STALE, no live node.
    pub fn alarm(&self) -> Style {
        self.pick(
            Style::default()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )
    }

    pub fn warn(&self) -> Style {
        self.pick(
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD),
        )
    }

    pub fn good(&self) -> Style {
        self.pick(Style::default().fg(Color::Green), Style::default())
    }

    pub fn dim(&self) -> Style {
        self.pick(
            Style::default().fg(Color::DarkGray),
            Style::default().add_modifier(Modifier::DIM),
        )
    }

    pub fn error(&self) -> Style {
        self.pick(
            Style::default().fg(Color::Red),
            Style::default().add_modifier(Modifier::BOLD),
        )
    }

    pub fn key(&self) -> Style {
        self.pick(
            Style::default()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD),
        )
    }

    /// The focused button of a dialog.
    pub fn focused(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    /// Run statuses in the history: same palette as job states.
    pub fn run_status(&self, status: &str) -> Style {
        match status {
            "succeeded" => self.good(),
            "running" => self.state(State::Running),
            "skipped" => self.dim(),
            _ => self.error(),
        }
    }
}
