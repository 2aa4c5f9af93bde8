//! psql's restricted mode for every restore: no backslash meta-command (`\!` runs a shell
//! command, `\o |cmd`, `\copy ... program`, `\connect`, ...) can run from a backup's SQL, even
//! one that was altered or that lacks pg_dump's own `\restrict` line.
//!
//! psql 17.6, 16.10, 15.14, 14.19, 13.22 and later have `\restrict KEY`: after it, psql refuses
//! every meta-command but `\unrestrict KEY`. pg_dump of those versions opens its plain SQL with
//! `\restrict K` and ends it with `\unrestrict K`, with a random `K` — written in the dump, so
//! whoever can edit the dump can also lift it. So the restore sends its own `\restrict` with a
//! key that never appears anywhere (random per restore) as the very first line, and passes the
//! dump through [`RestrictFilter`], which drops pg_dump's own `\restrict K` (psql refuses a
//! second `\restrict`) and its `\unrestrict K` (which would fail on our key). Any other
//! `\restrict` or `\unrestrict` is left in place and makes psql fail: the restore stops and
//! rolls back. Lines of `COPY ... FROM stdin` data are data, not commands, and pass untouched.
//!
//! The filter streams: it keeps at most a short prefix of the current line, whatever the
//! length of lines (a `COPY` row can be hundreds of MB).

use rand::RngCore;

use super::tools::major_of;

/// The versions whose psql knows `\restrict`: (major, first minor), and every major from 18.
const RESTRICT_SINCE: &[(u32, u32)] = &[(17, 6), (16, 10), (15, 14), (14, 19), (13, 22)];

/// Whether psql of `version` (e.g. `15.20`, `18.1`, `16beta2`) has `\restrict`.
pub(crate) fn psql_restricts(version: &str) -> bool {
    let Some(major) = major_of(version) else {
        return false;
    };
    if major >= 18 {
        return true;
    }
    let minor = version
        .split_once('.')
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse::<u32>().ok());
    RESTRICT_SINCE
        .iter()
        .any(|&(m, first)| m == major && minor.is_some_and(|minor| minor >= first))
}

/// A fresh random key (32 hex digits) for `\restrict`.
pub(crate) fn random_key() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The line that puts psql in restricted mode with `key`.
pub(crate) fn restrict_line(key: &str) -> Vec<u8> {
    format!("\\restrict {key}\n").into_bytes()
}

/// Bytes of a line kept to classify it: enough for `\unrestrict ` and a pg_dump key (pg_dump
/// writes 64 characters).
const PREFIX: usize = 128;

/// How many bytes of a line's end are kept to see whether it ends in `FROM stdin;`.
const TAIL: usize = 16;

/// What the current line is, as far as the filter has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Still deciding: the prefix so far is held back.
    Undecided,
    /// Passed through (the prefix was released).
    Pass,
    /// A `COPY` statement: passed through, its end watched for `FROM stdin;`.
    Copy,
    /// Longer than [`PREFIX`] and starting like a meta-command we might drop: passed through
    /// (if it is one, psql refuses it).
    Long,
}

/// Drops pg_dump's own `\restrict K` / `\unrestrict K` pair from a stream of SQL (see the
/// module docs); everything else passes unchanged.
#[derive(Debug)]
pub(crate) struct RestrictFilter {
    line: Line,
    /// The start of the current line while it is [`Line::Undecided`].
    prefix: Vec<u8>,
    /// The last bytes of a [`Line::Copy`] line.
    tail: Vec<u8>,
    /// Inside `COPY ... FROM stdin` data.
    in_copy: bool,
    /// pg_dump's key, once its `\restrict` line was dropped.
    dump_key: Option<Vec<u8>>,
    /// Lines dropped (for the restore's notes and tests).
    dropped: u32,
}

impl Default for RestrictFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl RestrictFilter {
    pub(crate) fn new() -> Self {
        Self {
            line: Line::Undecided,
            prefix: Vec::with_capacity(PREFIX),
            tail: Vec::with_capacity(TAIL),
            in_copy: false,
            dump_key: None,
            dropped: 0,
        }
    }

    /// How many of pg_dump's `\restrict`/`\unrestrict` lines were dropped.
    pub(crate) fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Filters `chunk`, appending what psql should read to `out`.
    pub(crate) fn filter(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (part, newline) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], true),
                None => (rest, false),
            };
            self.part(part, out);
            if newline {
                self.end_line(out);
                rest = &rest[part.len() + 1..];
            } else {
                rest = &[];
            }
        }
    }

    /// Releases a held-back prefix at the end of the stream (a last line without newline).
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.line == Line::Undecided {
            out.append(&mut self.prefix);
        }
    }

    /// Some bytes of the current line (no newline in them).
    fn part(&mut self, part: &[u8], out: &mut Vec<u8>) {
        match self.line {
            Line::Pass | Line::Long => out.extend_from_slice(part),
            Line::Copy => {
                out.extend_from_slice(part);
                self.keep_tail(part);
            }
            Line::Undecided => {
                self.prefix.extend_from_slice(part);
                self.classify(out);
            }
        }
    }

    /// Decides what the current line is once its prefix says enough.
    fn classify(&mut self, out: &mut Vec<u8>) {
        let p = self.prefix.as_slice();
        if self.in_copy {
            // Only `\.` (the end of the data, maybe with a CR) matters; wait for it or pass.
            if p.len() > 3 || !b"\\.\r".starts_with(p) {
                self.release(Line::Pass, out);
            }
            return;
        }
        let candidate = [&b"\\restrict "[..], b"\\unrestrict ", b"COPY "]
            .iter()
            .any(|word| word.starts_with(p) || p.starts_with(word));
        if !candidate {
            self.release(Line::Pass, out);
        } else if p.starts_with(b"COPY ") {
            let held = std::mem::take(&mut self.prefix);
            self.keep_tail(&held);
            out.extend_from_slice(&held);
            self.line = Line::Copy;
        } else if p.len() > PREFIX {
            self.release(Line::Long, out);
        }
    }

    fn release(&mut self, line: Line, out: &mut Vec<u8>) {
        out.append(&mut self.prefix);
        self.line = line;
    }

    fn keep_tail(&mut self, part: &[u8]) {
        self.tail.extend_from_slice(part);
        let excess = self.tail.len().saturating_sub(TAIL);
        self.tail.drain(..excess);
    }

    /// At a newline: a held line is decided now (dropped or passed), then the newline.
    fn end_line(&mut self, out: &mut Vec<u8>) {
        let line = std::mem::replace(&mut self.line, Line::Undecided);
        match line {
            Line::Undecided => {
                let held = std::mem::take(&mut self.prefix);
                if self.drops(&held) {
                    self.dropped += 1;
                } else {
                    if self.in_copy && held.strip_suffix(b"\r").unwrap_or(&held) == b"\\." {
                        self.in_copy = false;
                    }
                    out.extend_from_slice(&held);
                    out.push(b'\n');
                }
            }
            Line::Copy => {
                let tail = std::mem::take(&mut self.tail);
                let trimmed = tail.strip_suffix(b"\r").unwrap_or(&tail);
                self.in_copy = trimmed.ends_with(b"FROM stdin;");
                out.push(b'\n');
            }
            Line::Pass | Line::Long => out.push(b'\n'),
        }
        self.prefix.clear();
    }

    /// Whether a whole (short) line outside `COPY` data is pg_dump's own `\restrict K` (the
    /// first one) or `\unrestrict K` (with that same K).
    fn drops(&mut self, line: &[u8]) -> bool {
        if self.in_copy {
            return false;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(key) = line.strip_prefix(b"\\restrict ") {
            let key = key.trim_ascii();
            if self.dump_key.is_none() && valid_key(key) {
                self.dump_key = Some(key.to_vec());
                return true;
            }
        } else if let Some(key) = line.strip_prefix(b"\\unrestrict ") {
            return self.dump_key.as_deref() == Some(key.trim_ascii());
        }
        false
    }
}

/// pg_dump's keys are alphanumeric.
fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.iter().all(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], chunk: usize) -> (Vec<u8>, u32) {
        let mut f = RestrictFilter::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            f.filter(piece, &mut out);
        }
        f.finish(&mut out);
        (out, f.dropped())
    }

    const DUMP: &[u8] = b"--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\n\
SET statement_timeout = 0;\n\
COPY public.t (id, note) FROM stdin;\n\
1\t\\restrict AbC123\n\
\\restrict data line that is data\n\
\\unrestrict AbC123\n\
\\.\n\
SELECT 1;\n\
--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict AbC123\n\n";

    const WANT: &[u8] = b"--\n-- PostgreSQL database dump\n--\n\n\n\
SET statement_timeout = 0;\n\
COPY public.t (id, note) FROM stdin;\n\
1\t\\restrict AbC123\n\
\\restrict data line that is data\n\
\\unrestrict AbC123\n\
\\.\n\
SELECT 1;\n\
--\n-- PostgreSQL database dump complete\n--\n\n\n";

    #[test]
    fn drops_pg_dumps_pair_and_keeps_copy_data_at_every_chunk_size() {
        for chunk in 1..=DUMP.len() {
            let (out, dropped) = run(DUMP, chunk);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(WANT),
                "chunk {chunk}"
            );
            assert_eq!(dropped, 2, "chunk {chunk}");
        }
    }

    #[test]
    fn other_meta_commands_pass_so_that_psql_refuses_them() {
        let input = b"\\restrict K1\nSELECT 1;\n\\unrestrict OTHER\n\\! touch /tmp/x\n\
\\restrict K2\n\\unrestrict K1\n";
        let (out, dropped) = run(input, 3);
        assert_eq!(
            out,
            b"SELECT 1;\n\\unrestrict OTHER\n\\! touch /tmp/x\n\\restrict K2\n".to_vec()
        );
        assert_eq!(dropped, 2);
    }

    #[test]
    fn long_lines_and_a_last_line_without_newline_pass_whole() {
        let mut input = b"\\restrict ".to_vec();
        input.extend(std::iter::repeat_n(b'a', 1000));
        input.extend_from_slice(b"\nCOPY x FROM stdin;\r\n");
        input.extend(std::iter::repeat_n(b'z', 100_000));
        input.extend_from_slice(b"\n\\.\n\\unrestr");
        let (out, dropped) = run(&input, 7);
        assert_eq!(out, input);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn versions_with_restrict() {
        for yes in [
            "15.14", "15.20", "16.10", "17.6", "17.10", "14.19", "13.22", "18.0", "18beta3",
        ] {
            assert!(psql_restricts(yes), "{yes}");
        }
        for no in ["15.13", "16.9", "17.5", "12.22", "9.6.24", "banana", "15"] {
            assert!(!psql_restricts(no), "{no}");
        }
        let key = random_key();
        assert_eq!(key.len(), 32);
        assert!(valid_key(key.as_bytes()));
        assert_ne!(key, random_key());
    }
}
