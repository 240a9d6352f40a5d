//! [`SmiStream`]: the bytes of successive `read()`s of the SMI fd cut into event lines and parsed.

use crate::util::text;

use super::abi::KFD_SMI_FIFO_SIZE;
use super::event::{parse_line, SmiError, SmiEvent, QUOTE_MAX};

/// Turns the bytes of successive `read()`s into events, keeping an event cut at the end of one
/// read until the next read completes it.
#[derive(Debug, Default)]
pub struct SmiStream {
    partial: Vec<u8>,
    /// Inside a line that grew past [`KFD_SMI_FIFO_SIZE`]: drop bytes up to the next newline.
    discarding: bool,
}

impl SmiStream {
    pub fn new() -> SmiStream {
        SmiStream::default()
    }

    /// The events completed by `chunk`, in order, each parsed or refused. Empty lines are
    /// skipped: the kernel writes none, and they carry nothing.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<SmiEvent, SmiError>> {
        let mut out = Vec::new();
        let mut rest = chunk;
        loop {
            let (segment, complete) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if !self.discarding {
                self.partial.extend_from_slice(segment);
                if self.partial.len() > KFD_SMI_FIFO_SIZE {
                    let start = String::from_utf8_lossy(&self.partial[..64]).into_owned();
                    out.push(Err(SmiError::Overlong {
                        start: text::quote(&start, QUOTE_MAX),
                    }));
                    self.partial.clear();
                    self.discarding = true;
                }
            }
            if !complete {
                break;
            }
            rest = &rest[segment.len() + 1..];
            if self.discarding {
                self.discarding = false;
                continue;
            }
            let line = std::mem::take(&mut self.partial);
            if !line.is_empty() {
                out.push(parse_line(&String::from_utf8_lossy(&line)));
            }
        }
        out
    }

    /// Bytes held back, waiting for the rest of their event.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Ends the stream: an event still incomplete is an error (the fd was closed, or the
    /// kernel's message buffer cut it before its newline).
    pub fn finish(&mut self) -> Option<SmiError> {
        self.discarding = false;
        if self.partial.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
        Some(SmiError::Unterminated {
            text: text::quote(&text, QUOTE_MAX),
        })
    }
}
