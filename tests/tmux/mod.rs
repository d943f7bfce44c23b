//! The console in a real terminal: a tmux server of its own (one socket per
//! `Tmux`, killed when it drops, pass or fail), driven by keys and read
//! from the screen. Every wait polls until a deadline.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const LIMIT: Duration = Duration::from_secs(40);

/// One tmux server (own socket) with one session running the console.
pub struct Tmux {
    pub socket: String,
}

impl Tmux {
    pub fn start(script: &Path, env: &[(&str, String)]) -> Tmux {
        Tmux::start_sized(script, env, 120, 40)
    }

    /// A terminal of `width`×`height` cells.
    pub fn start_sized(script: &Path, env: &[(&str, String)], width: u16, height: u16) -> Tmux {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "crondeck-e2e-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let tmux = Tmux { socket };
        let mut cmd = Command::new("tmux");
        cmd.args([
            "-L",
            &tmux.socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "e2e",
        ])
        .args(["-x", &width.to_string(), "-y", &height.to_string()])
        .arg(script)
        .env_remove("NO_COLOR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .output()
            .expect("tmux is installed (apt-get install tmux)");
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    pub fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Press keys (tmux key names: "Enter", "Escape", "Tab", "C-u", "r").
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Type text literally.
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "e2e", "-l", text]);
    }

    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "e2e"])
    }

    /// The screen with its colour escapes (`capture-pane -e`).
    pub fn screen_with_colours(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-e", "-t", "e2e"])
    }

    /// Wait until the screen satisfies `check`; panic with the screen if not.
    pub async fn wait(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out after {LIMIT:?} waiting for {what}; the screen:\n{screen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_text(&self, text: &str) -> String {
        self.wait(&format!("{text:?}"), |s| s.contains(text)).await
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
