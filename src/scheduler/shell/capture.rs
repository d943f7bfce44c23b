//! Bounded capture of one output stream of a shell job.
//!
//! A job may print gigabytes; the node keeps only the first `limit` bytes
//! (usually where the job says what it is doing) and the last `limit` bytes
//! (usually where it says why it failed). The tail is a fixed-size ring, so
//! memory is at most `2 * limit` bytes whatever the job prints.

/// Everything that was kept of one stream, ready to be stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedOutput {
    /// Head, a note of how much was dropped (only when something was), tail.
    /// Lossy UTF-8 with NUL characters removed: PostgreSQL `text` cannot
    /// hold `\0`.
    pub text: String,
    /// Bytes the job wrote to the stream (as far as it was read).
    pub total_bytes: u64,
    /// Bytes between head and tail that were not kept.
    pub dropped_bytes: u64,
}

/// Head buffer plus tail ring for one stream.
#[derive(Debug)]
pub(crate) struct Capture {
    limit: usize,
    head: Vec<u8>,
    /// Ring of the last bytes after the head; `tail.len() <= limit`.
    tail: Vec<u8>,
    /// Index of the oldest byte in `tail` once the ring is full (0 before).
    tail_start: usize,
    total: u64,
    /// Appended to the text, e.g. when reading had to stop before EOF.
    note: Option<&'static str>,
}

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        // No preallocation: most jobs print little, and a node runs many.
        Capture {
            limit,
            head: Vec::new(),
            tail: Vec::new(),
            tail_start: 0,
            total: 0,
            note: None,
        }
    }

    pub(crate) fn push(&mut self, mut data: &[u8]) {
        self.total = self.total.saturating_add(data.len() as u64);
        if self.head.len() < self.limit {
            let n = (self.limit - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        if data.is_empty() || self.limit == 0 {
            return;
        }
        if data.len() >= self.limit {
            // The chunk alone replaces the whole ring.
            self.tail.clear();
            self.tail
                .extend_from_slice(&data[data.len() - self.limit..]);
            self.tail_start = 0;
            return;
        }
        if self.tail.len() < self.limit {
            let n = (self.limit - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        // The ring is full: overwrite the oldest bytes, wrapping at most once.
        while !data.is_empty() {
            let n = (self.limit - self.tail_start).min(data.len());
            self.tail[self.tail_start..self.tail_start + n].copy_from_slice(&data[..n]);
            self.tail_start = (self.tail_start + n) % self.limit;
            data = &data[n..];
        }
    }

    /// Records why the stream was not read to its end.
    pub(crate) fn set_note(&mut self, note: &'static str) {
        self.note = Some(note);
    }

    #[cfg(test)]
    pub(crate) fn finish(self) -> CapturedOutput {
        self.snapshot()
    }

    /// What was kept so far, as it would be stored (the capture goes on).
    pub(crate) fn snapshot(&self) -> CapturedOutput {
        let mut tail = Vec::with_capacity(self.tail.len());
        tail.extend_from_slice(&self.tail[self.tail_start..]);
        tail.extend_from_slice(&self.tail[..self.tail_start]);
        let kept = (self.head.len() + tail.len()) as u64;
        let dropped = self.total.saturating_sub(kept);
        let mut text = if dropped == 0 {
            // Head and tail are contiguous: convert them together so a
            // character split across the boundary survives.
            let mut all = self.head.clone();
            all.extend_from_slice(&tail);
            clean_text(&all)
        } else {
            format!(
                "{}\n[… {dropped} bytes dropped …]\n{}",
                clean_text(&self.head),
                clean_text(&tail)
            )
        };
        if let Some(note) = self.note {
            text.push_str(note);
        }
        CapturedOutput {
            text,
            total_bytes: self.total,
            dropped_bytes: dropped,
        }
    }
}

/// Lossy UTF-8 without NUL characters.
fn clean_text(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    text.retain(|c| c != '\0');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(limit: usize, chunks: &[&[u8]]) -> CapturedOutput {
        let mut c = Capture::new(limit);
        for chunk in chunks {
            c.push(chunk);
        }
        c.finish()
    }

    #[test]
    fn small_output_is_kept_whole() {
        let out = capture(8, &[b"hello", b" world"]);
        assert_eq!(out.text, "hello world");
        assert_eq!((out.total_bytes, out.dropped_bytes), (11, 0));
    }

    #[test]
    fn exactly_two_limits_drops_nothing() {
        let out = capture(4, &[b"abcdefgh"]);
        assert_eq!(out.text, "abcdefgh");
        assert_eq!(out.dropped_bytes, 0);
    }

    #[test]
    fn middle_is_dropped_with_a_note() {
        // Many small chunks exercise the ring wrap-around.
        let data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut c = Capture::new(10);
        for chunk in data.chunks(7) {
            c.push(chunk);
        }
        let out = c.finish();
        let head = String::from_utf8_lossy(&data[..10]);
        let tail = String::from_utf8_lossy(&data[990..]);
        assert_eq!(out.text, format!("{head}\n[… 980 bytes dropped …]\n{tail}"));
        assert_eq!((out.total_bytes, out.dropped_bytes), (1000, 980));
    }

    #[test]
    fn chunk_larger_than_limit_replaces_ring() {
        let out = capture(3, &[b"abc", b"de", b"0123456789", b"X"]);
        assert_eq!(out.text, "abc\n[… 10 bytes dropped …]\n89X");
        assert_eq!(out.total_bytes, 16);
    }

    #[test]
    fn nul_and_invalid_utf8_are_cleaned() {
        let out = capture(64, &[b"a\0b\xffc"]);
        assert_eq!(out.text, "ab\u{fffd}c");
        assert_eq!(out.total_bytes, 5);
    }

    #[test]
    fn zero_limit_keeps_only_the_note() {
        let out = capture(0, &[b"abc"]);
        assert_eq!(out.text, "\n[… 3 bytes dropped …]\n");
        assert_eq!(out.dropped_bytes, 3);
    }

    #[test]
    fn note_is_appended() {
        let mut c = Capture::new(8);
        c.push(b"x");
        c.set_note(" [cut]");
        assert_eq!(c.finish().text, "x [cut]");
    }
}
