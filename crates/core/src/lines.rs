//! Splitting a daemon's output into lines without letting one line grow without bound.
//!
//! Build output and JSON progress streams arrive in chunks and are split at newlines. A step that prints
//! megabytes without a newline (a progress bar redrawn with `\r`, a binary written to the terminal) would
//! otherwise grow one buffer until memory runs out. A line longer than the cap is dropped, up to its newline,
//! and reported once as [`Piece::Overlong`] so the caller can say so.

use std::collections::VecDeque;

/// The longest line berth keeps from build output or a daemon's JSON stream.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// What the splitter gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A line, without its newline.
    Line(Vec<u8>),
    /// A line longer than the cap was dropped here.
    Overlong,
}

/// Splits pushed chunks into [`Piece`]s, holding at most the cap plus one chunk.
#[derive(Debug)]
pub struct LineSplitter {
    cap: usize,
    partial: Vec<u8>,
    /// Inside an overlong line: drop bytes up to the next newline.
    skipping: bool,
    ready: VecDeque<Piece>,
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter::new(MAX_LINE_BYTES)
    }
}

impl LineSplitter {
    /// A splitter keeping lines of up to `cap` bytes.
    pub fn new(cap: usize) -> Self {
        LineSplitter {
            cap,
            partial: Vec::new(),
            skipping: false,
            ready: VecDeque::new(),
        }
    }

    /// Adds a chunk of the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let newline = data.iter().position(|b| *b == b'\n');
            if self.skipping {
                let Some(at) = newline else { return };
                self.skipping = false;
                data = &data[at + 1..];
                continue;
            }
            let (part, rest, ended) = match newline {
                Some(at) => (&data[..at], &data[at + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            if self.partial.len() + part.len() > self.cap {
                self.partial.clear();
                self.ready.push_back(Piece::Overlong);
                self.skipping = !ended;
            } else {
                self.partial.extend_from_slice(part);
                if ended {
                    self.ready
                        .push_back(Piece::Line(std::mem::take(&mut self.partial)));
                }
            }
            data = rest;
        }
    }

    /// The next complete piece, if any.
    pub fn next_piece(&mut self) -> Option<Piece> {
        self.ready.pop_front()
    }

    /// At the end of the stream: what is left after the last newline, if anything.
    pub fn finish(&mut self) -> Option<Piece> {
        if let Some(piece) = self.ready.pop_front() {
            return Some(piece);
        }
        self.skipping = false;
        (!self.partial.is_empty()).then(|| Piece::Line(std::mem::take(&mut self.partial)))
    }
}

/// The lines of `reader` as text (invalid UTF-8 replaced), each at most [`MAX_LINE_BYTES`], with `overlong`
/// in place of a longer one. Ends at the end of the input or at a read error.
pub fn bounded_lines(
    mut reader: impl std::io::Read,
    overlong: &'static str,
) -> impl Iterator<Item = String> {
    let mut splitter = LineSplitter::default();
    let mut buffer = vec![0u8; 64 << 10];
    let mut ended = false;
    std::iter::from_fn(move || loop {
        let piece = if ended {
            splitter.finish()
        } else {
            splitter.next_piece()
        };
        match piece {
            Some(Piece::Line(line)) => return Some(String::from_utf8_lossy(&line).into_owned()),
            Some(Piece::Overlong) => return Some(overlong.to_string()),
            None if ended => return None,
            None => match reader.read(&mut buffer) {
                Ok(0) | Err(_) => ended = true,
                Ok(n) => splitter.push(&buffer[..n]),
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(splitter: &mut LineSplitter) -> Vec<Piece> {
        std::iter::from_fn(|| splitter.next_piece()).collect()
    }

    #[test]
    fn bounded_lines_reads_text_with_a_marker_for_long_lines() {
        let mut input = b"one\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\nlast");
        let lines: Vec<String> = bounded_lines(&input[..], "(long)").collect();
        assert_eq!(lines, vec!["one", "(long)", "last"]);
    }

    #[test]
    fn lines_split_across_chunks() {
        let mut s = LineSplitter::new(16);
        s.push(b"ab");
        s.push(b"c\nde\n\nf");
        assert_eq!(
            drain(&mut s),
            vec![
                Piece::Line(b"abc".to_vec()),
                Piece::Line(b"de".to_vec()),
                Piece::Line(Vec::new())
            ]
        );
        assert_eq!(s.finish(), Some(Piece::Line(b"f".to_vec())));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn an_endless_line_is_dropped_once_and_memory_stays_bounded() {
        let mut s = LineSplitter::new(8);
        for _ in 0..10_000 {
            s.push(b"xxxxxxxxxxxxxxxx");
            assert!(s.partial.len() <= 8);
        }
        s.push(b"tail of it\nnext\n");
        assert_eq!(
            drain(&mut s),
            vec![Piece::Overlong, Piece::Line(b"next".to_vec())]
        );
        // a line that ends inside the chunk that makes it too long
        s.push(b"123456789\nok\n");
        assert_eq!(
            drain(&mut s),
            vec![Piece::Overlong, Piece::Line(b"ok".to_vec())]
        );
    }
}
