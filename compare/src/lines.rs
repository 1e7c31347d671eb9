//! Numbered lines of a JSON Lines file, read one at a time into one reused
//! buffer: what the streaming capture and diff-log readers share.

use std::io::{self, BufRead};

#[derive(Debug)]
pub(crate) struct NumberedLines<R> {
    reader: R,
    line_no: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> NumberedLines<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self {
            reader,
            line_no: 0,
            buf: Vec::new(),
        }
    }

    /// The next line (1-based number, bytes without its `\n` or `\r\n`, as
    /// `str::lines` strips them), `None` at the end.
    pub(crate) fn next_line(&mut self) -> Option<io::Result<(usize, &[u8])>> {
        self.buf.clear();
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => None,
            Ok(_) => {
                self.line_no += 1;
                let line = match self.buf.strip_suffix(b"\n") {
                    Some(rest) => rest.strip_suffix(b"\r").unwrap_or(rest),
                    None => &self.buf[..],
                };
                Some(Ok((self.line_no, line)))
            }
            Err(e) => Some(Err(e)),
        }
    }
}
