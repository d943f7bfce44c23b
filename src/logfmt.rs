//! Log lines that say which process wrote them: every line starts with the
//! process id and, once this process runs a scheduler node, the node's name
//! (`pid=4242 node=web-1-4242`), so the lines of several consoles and nodes
//! sharing a log collector can be told apart.

use std::fmt;
use std::sync::OnceLock;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

static NODE_NAME: OnceLock<String> = OnceLock::new();

/// Name this process's node in its log lines (the first node started wins;
/// a process runs one).
pub fn set_node_name(name: &str) {
    let _ = NODE_NAME.set(crate::text::field(name));
}

/// The prefix of every line: `pid=N` and, when known, `node=NAME`.
pub fn prefix() -> String {
    match NODE_NAME.get() {
        Some(node) => format!("pid={} node={node}", std::process::id()),
        None => format!("pid={}", std::process::id()),
    }
}

/// Wraps a formatter: the [`prefix`], then the line as `inner` writes it.
pub struct Prefixed<F> {
    pub inner: F,
}

impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "{} ", prefix())?;
        self.inner.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_prefix_names_the_process_then_its_node() {
        let pid = std::process::id();
        assert!(super::prefix().starts_with(&format!("pid={pid}")));
        super::set_node_name("web-1\u{1b}[31m");
        // Escaped like every name we print: a node name cannot act on a terminal.
        assert_eq!(super::prefix(), format!("pid={pid} node=web-1\\e[31m"));
    }
}
