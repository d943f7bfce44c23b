//! Notifications (SPEC §10): tell people when a job needs them.
//!
//! ## Events
//!
//! | event            | when | episode (sent once per) |
//! |------------------|------|-------------------------|
//! | `failure_streak` | a job failed N times in a row (per job `notify_failures`, else `[notifications] failure_streak`, default 3) | failure streak (its first failure) |
//! | `auto_paused`    | the failure policy paused a job | pause |
//! | `overdue`        | no success for twice the job's interval (SPEC §4), and no run of it in progress (a run that started in time is not overdue until it has run longer than its own interval allows) | time of the last success |
//! | `recovered`      | a job that had one of the above succeeds again, or live nodes are back after `no_live_node` | the problem it closes |
//! | `no_live_node`   | no scheduler node is alive (recorded by `crondeck check`) | the last heartbeat seen |
//!
//! ## At least once, one per episode: the outbox
//!
//! Every node scans (each heartbeat interval) and may see the same episode.
//! Each event is inserted into `crondeck.notifications` under a unique key
//! that names its episode, together with one outbox row per channel that
//! takes it (`crondeck.notification_deliveries`), in one statement: only the
//! first insert of an episode records it, and never without its deliveries.
//! Delivery is separate ([`outbox`]): any live node claims due outbox rows
//! (`FOR UPDATE SKIP LOCKED`, under a lease), makes one attempt per claim and
//! reports it; a failed attempt is retried with exponential backoff (2 s,
//! 4 s, … at most 10 min apart) until the channel's `retries` are used up,
//! then the delivery is `failed` with its last error kept.
//!
//! A process killed during an attempt leaves its claim to expire; another
//! node then makes the attempt again. That is the residual at-least-once
//! window: if the receiver had already got the message when the sender died
//! (before it could report), it gets it a second time. Every attempt carries
//! the same idempotency key (the outbox row's id: the `Idempotency-Key` and
//! `X-Crondeck-Delivery` headers of a webhook, `idempotency_key` in the
//! JSON, `CRONDECK_IDEMPOTENCY_KEY` for a command, the `Message-ID` of a
//! mail), so a receiver that drops repeated keys sees exactly one delivery
//! per episode per channel.
//!
//! ## Channels
//!
//! A channel is a webhook, a command, an SMTP mail, or several of them. A
//! webhook gets a JSON POST whose `text` field is enough for a Slack incoming
//! webhook; it has a timeout. Its URL is treated as a secret: logs and the
//! database name the channel, never the URL. A command runs with `sh -c`,
//! with the event JSON on stdin; a non-zero exit is a failed attempt. SMTP
//! sends a plain-text mail (see [`smtp`]).

mod deliver;
mod detect;
pub mod outbox;
pub mod smtp;

use std::time::Duration;

use serde::Deserialize;

pub use deliver::attempt;
pub use detect::{check_cluster, scan, Pending};

use crate::timespec;

/// Failures in a row that notify when neither the job nor the config says.
pub const DEFAULT_FAILURE_STREAK: i32 = 3;
/// How long one webhook POST or command may take.
pub const DEFAULT_CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);
/// Further attempts after a failed delivery (each one claimed from the
/// outbox, 2 s, 4 s, 8 s, 16 s after the one before).
pub const DEFAULT_CHANNEL_RETRIES: u32 = 4;
/// The most `retries` a channel may ask for.
pub const MAX_CHANNEL_RETRIES: u32 = 20;

/// The event kinds, as stored and sent.
pub const EVENTS: [&str; 5] = [
    "failure_streak",
    "auto_paused",
    "overdue",
    "recovered",
    "no_live_node",
];

/// `[notifications]` in the config file.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsFile {
    /// Failures in a row that send `failure_streak`, unless a job says.
    pub failure_streak: Option<u32>,
    #[serde(rename = "channel")]
    pub channels: Vec<ChannelFile>,
}

// By hand: webhook URLs are secrets (a Slack webhook URL is a credential).
impl std::fmt::Debug for NotificationsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationsFile")
            .field("failure_streak", &self.failure_streak)
            .field("channels", &self.channels)
            .finish()
    }
}

/// `[[notifications.channel]]`.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelFile {
    pub name: String,
    pub webhook: Option<String>,
    pub command: Option<String>,
    /// `[notifications.channel.smtp]`: mail through an SMTP server.
    pub smtp: Option<smtp::SmtpFile>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    /// Only these events (default: all).
    pub events: Option<Vec<String>>,
}

impl std::fmt::Debug for ChannelFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelFile")
            .field("name", &self.name)
            .field("webhook", &self.webhook.as_ref().map(|_| "<secret>"))
            .field("command", &self.command)
            .field("smtp", &self.smtp)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("events", &self.events)
            .finish()
    }
}

/// A validated channel.
#[derive(Clone)]
pub struct Channel {
    pub name: String,
    pub webhook: Option<String>,
    pub command: Option<String>,
    pub smtp: Option<smtp::Smtp>,
    pub timeout: Duration,
    pub retries: u32,
    pub events: Vec<String>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("webhook", &self.webhook.as_ref().map(|_| "<secret>"))
            .field("command", &self.command)
            .field("smtp", &self.smtp)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("events", &self.events)
            .finish()
    }
}

/// Validated notification settings, shared by a node's tasks and `check`.
#[derive(Debug, Clone)]
pub struct Notifier {
    pub failure_streak: i32,
    pub channels: Vec<Channel>,
    /// Who inserts and sends: the node name, or `check@host`.
    pub sender: String,
}

impl Channel {
    /// The kinds of delivery this channel makes.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.webhook.is_some() {
            kinds.push("webhook");
        }
        if self.command.is_some() {
            kinds.push("command");
        }
        if self.smtp.is_some() {
            kinds.push("smtp");
        }
        kinds
    }

    /// Attempts in all: the first and its retries.
    pub fn max_attempts(&self) -> i32 {
        i32::try_from(self.retries.saturating_add(1)).unwrap_or(i32::MAX)
    }
}

impl Notifier {
    /// The outbox rows of an `event`: one per channel and kind that takes it,
    /// as the JSON array the database inserts
    /// (`{"channel", "kind", "max_attempts"}`).
    pub fn deliveries_for(&self, event: &str) -> serde_json::Value {
        let mut rows = Vec::new();
        for channel in self
            .channels
            .iter()
            .filter(|c| c.events.iter().any(|e| e == event))
        {
            for kind in channel.kinds() {
                rows.push(serde_json::json!({
                    "channel": channel.name,
                    "kind": kind,
                    "max_attempts": channel.max_attempts(),
                }));
            }
        }
        serde_json::Value::Array(rows)
    }

    /// The names of the channels this process can deliver to.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.name.clone()).collect()
    }

    /// The channel named `name`, if this process has it.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Check `[notifications]`; `None` when no channel is configured (then
    /// nothing is detected, recorded or sent). Errors say which key is wrong.
    pub fn from_file(file: &NotificationsFile, sender: &str) -> Result<Option<Notifier>, String> {
        Self::from_file_with_env(file, sender, &|key| std::env::var(key).ok())
    }

    /// [`Notifier::from_file`] with the environment given (SMTP passwords).
    pub fn from_file_with_env(
        file: &NotificationsFile,
        sender: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Notifier>, String> {
        if file.channels.is_empty() {
            return Ok(None);
        }
        let failure_streak = match file.failure_streak {
            Some(0) => return Err("[notifications] failure_streak must be 1 or more".into()),
            Some(n) => i32::try_from(n).unwrap_or(i32::MAX),
            None => DEFAULT_FAILURE_STREAK,
        };
        let mut channels = Vec::new();
        for (i, c) in file.channels.iter().enumerate() {
            let name = if c.name.trim().is_empty() {
                format!("channel {}", i + 1)
            } else {
                c.name.clone()
            };
            let at = format!("[[notifications.channel]] \"{name}\"");
            if channels.iter().any(|c: &Channel| c.name == name) {
                return Err(format!(
                    "{at}: two channels have this name (the outbox delivers by name)"
                ));
            }
            if c.webhook.is_none() && c.command.is_none() && c.smtp.is_none() {
                return Err(format!(
                    "{at}: give a `webhook`, a `command`, an `smtp` section, or several"
                ));
            }
            let smtp = c
                .smtp
                .as_ref()
                .map(|f| smtp::Smtp::from_file(f, &at, env))
                .transpose()?;
            if let Some(url) = &c.webhook {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(format!(
                        "{at}: `webhook` must be an http:// or https:// URL"
                    ));
                }
            }
            let timeout = match &c.timeout {
                Some(t) => {
                    timespec::parse_duration(t).map_err(|e| format!("{at}: timeout: {e}"))?
                }
                None => DEFAULT_CHANNEL_TIMEOUT,
            };
            let retries = c.retries.unwrap_or(DEFAULT_CHANNEL_RETRIES);
            if retries > MAX_CHANNEL_RETRIES {
                return Err(format!(
                    "{at}: retries = {retries} is too many (at most {MAX_CHANNEL_RETRIES})"
                ));
            }
            let events = match &c.events {
                Some(events) => {
                    for e in events {
                        if !EVENTS.contains(&e.as_str()) {
                            return Err(format!(
                                "{at}: unknown event \"{e}\" (expected one of: {})",
                                EVENTS.join(", ")
                            ));
                        }
                    }
                    events.clone()
                }
                None => EVENTS.iter().map(|e| e.to_string()).collect(),
            };
            channels.push(Channel {
                name,
                webhook: c.webhook.clone(),
                command: c.command.clone(),
                smtp,
                timeout,
                retries,
                events,
            });
        }
        Ok(Some(Notifier {
            failure_streak,
            channels,
            sender: sender.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> NotificationsFile {
        toml::from_str(text).expect("valid toml")
    }

    #[test]
    fn no_channel_means_no_notifier() {
        assert!(Notifier::from_file(&file(""), "n").unwrap().is_none());
    }

    #[test]
    fn channels_are_validated_with_their_name() {
        let err = Notifier::from_file(&file("[[channel]]\nname = \"ops\"\n"), "n").unwrap_err();
        assert!(err.contains("\"ops\"") && err.contains("webhook"), "{err}");
        let err = Notifier::from_file(
            &file("[[channel]]\nname = \"ops\"\ncommand = \"cat\"\nevents = [\"late\"]\n"),
            "n",
        )
        .unwrap_err();
        assert!(err.contains("unknown event \"late\""), "{err}");
        let ok = Notifier::from_file(
            &file(
                "failure_streak = 2\n[[channel]]\nwebhook = \"https://hooks.example/T/B/secret\"\n",
            ),
            "n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.failure_streak, 2);
        assert_eq!(ok.channels[0].events.len(), 5);
        assert!(!format!("{ok:?}").contains("hooks.example"));
    }
}
