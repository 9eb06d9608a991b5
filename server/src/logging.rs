//! Where text logs go: standard error, one line per event, with every control character that
//! a client could have put into a logged field escaped, so that no request can forge a log
//! line (a newline) or drive the operator's terminal (an escape sequence).
//!
//! Invariants:
//! - The formatter hands over one whole event per write, ending in its newline; that last
//!   newline is the only raw line break that reaches the output.
//! - Tabs stay; the escape character stays only when the output is a terminal with colours,
//!   where the formatter writes its own colour codes and already escapes it in field values.
//!   Everything else below 0x20, and DEL, becomes `\n`, `\r`, or `\xNN`.
//! - JSON logs need none of this: a JSON string escapes control characters itself.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Standard error, with each event's control characters escaped.
#[derive(Debug, Clone, Copy)]
pub struct EscapedStderr {
    /// Colour codes are written (the formatter's own escape sequences must pass).
    pub ansi: bool,
}

impl<'a> MakeWriter<'a> for EscapedStderr {
    type Writer = EscapingWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter::new(io::stderr(), self.ansi)
    }
}

/// Writes each buffer (one event) with its control characters escaped.
#[derive(Debug)]
pub struct EscapingWriter<W> {
    inner: W,
    ansi: bool,
}

impl<W: Write> EscapingWriter<W> {
    /// Escapes what it writes to `inner`; `ansi`: colour codes pass.
    pub fn new(inner: W, ansi: bool) -> Self {
        EscapingWriter { inner, ansi }
    }
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        // The usual line has nothing to escape: written as it is, in one write.
        if !body.iter().any(|&b| needs_escape(b, self.ansi)) {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                b if needs_escape(b, self.ansi) => {
                    line.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                }
                b => line.push(b),
            }
        }
        line.extend_from_slice(end);
        self.inner.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether byte `b` of a log line is written escaped. UTF-8's multi-byte sequences never
/// contain a byte below 0x80, so escaping bytes keeps the rest of the text intact.
fn needs_escape(b: u8, ansi: bool) -> bool {
    match b {
        b'\t' => false,
        0x1b => !ansi,
        0..0x20 | 0x7f => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(line: &[u8], ansi: bool) -> String {
        let mut out = Vec::new();
        let mut writer = EscapingWriter::new(&mut out, ansi);
        assert_eq!(writer.write(line).unwrap(), line.len());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_forged_line_stays_on_its_own() {
        let line = b"2026-12-02 INFO head connected sdk=JavaScript\n2026-12-02 ERROR forged \x1b[31mred\x07\r\x7f\n";
        let out = escaped(line, false);
        assert_eq!(
            out,
            "2026-12-02 INFO head connected sdk=JavaScript\\n2026-12-02 ERROR forged \\x1b[31mred\\x07\\r\\x7f\n"
        );
        assert_eq!(out.matches('\n').count(), 1);
    }

    #[test]
    fn colours_and_plain_text_pass() {
        let line = "\x1b[32m INFO\x1b[0m tab\there, \u{e6}\u{f8}\u{e5} \u{1f600}\n";
        assert_eq!(escaped(line.as_bytes(), true), line);
        assert_eq!(
            escaped(line.as_bytes(), false),
            "\\x1b[32m INFO\\x1b[0m tab\there, \u{e6}\u{f8}\u{e5} \u{1f600}\n"
        );
        // A buffer without its newline is escaped whole.
        assert_eq!(escaped(b"a\nb", false), "a\\nb");
    }
}
