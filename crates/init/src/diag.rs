//! Diagnostics: one-line messages to standard error without `core::fmt`.
//!
//! Messages are assembled in a fixed buffer and written with a single
//! `write`, so lines from the init and its children do not interleave
//! mid-line and nothing allocates (the child side of `fork` may use this).

use crate::sys;

/// A message line being assembled; longer messages are truncated.
#[derive(Debug)]
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Appends text (a `&str` or raw bytes, e.g. a command name).
    pub fn push(&mut self, text: impl AsRef<[u8]>) -> &mut Self {
        for &b in text.as_ref() {
            // Leave room for the final newline.
            if self.len + 1 >= self.buf.len() {
                break;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        self
    }

    /// Appends a decimal number.
    pub fn num(&mut self, n: i64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            self.push("-");
        }
        self.push(&digits[i..])
    }

    /// The text assembled so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Terminates the line and writes it to standard error.
    pub fn stderr(&mut self) {
        self.buf[self.len] = b'\n';
        write_all(2, &self.buf[..self.len + 1]);
    }
}

/// Writes all of `bytes` to `fd`, ignoring errors: there is nowhere left to
/// report a failure to write a diagnostic.
pub fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match sys::write(fd, bytes) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n.min(bytes.len())..],
            Err(sys::errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_truncation() {
        let mut l = Line::new();
        l.push("a=")
            .num(0)
            .push(" b=")
            .num(-42)
            .push(" c=")
            .num(i64::MAX);
        assert_eq!(l.as_bytes(), b"a=0 b=-42 c=9223372036854775807");
        let mut long = Line::new();
        for _ in 0..100 {
            long.push("0123456789");
        }
        assert_eq!(long.as_bytes().len(), 511);
    }
}
