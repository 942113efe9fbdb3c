//! The error type: a failed system call plus what the init was doing.

use core::fmt;

use crate::diag::Line;
use crate::sys::errno;

/// A system call failed; carries what was being attempted and the errno.
///
/// The context is a static string so that building an error never
/// allocates: the same type serves the freestanding binary and `std` users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    context: &'static str,
    errno: i32,
}

impl Error {
    /// An error from `errno` while doing `context` (e.g. "blocking signals").
    pub const fn new(context: &'static str, errno: i32) -> Self {
        Error { context, errno }
    }

    /// What the init was doing when the call failed.
    pub const fn context(&self) -> &'static str {
        self.context
    }

    /// The raw `errno` value.
    pub const fn raw_os_error(&self) -> i32 {
        self.errno
    }

    /// Writes `peapod-init: CONTEXT: DESCRIPTION` to standard error.
    ///
    /// This avoids `core::fmt`, which would add several kilobytes to the
    /// size-optimised binary.
    pub fn report(&self) {
        let mut line = Line::new();
        line.push("peapod-init: ").push(self.context).push(": ");
        push_errno(&mut line, self.errno);
        line.stderr();
    }
}

/// Appends a short description of `errno` to `line`.
pub(crate) fn push_errno(line: &mut Line, e: i32) {
    match describe(e) {
        Some(text) => line.push(text),
        None => line.push("os error ").num(e as i64),
    };
}

/// A description for the errors an init is likely to see.
fn describe(e: i32) -> Option<&'static str> {
    Some(match e {
        errno::EPERM => "operation not permitted",
        errno::ENOENT => "no such file or directory",
        errno::ESRCH => "no such process",
        errno::ENOEXEC => "exec format error",
        errno::ECHILD => "no child processes",
        errno::EACCES => "permission denied",
        errno::ENOTDIR => "not a directory",
        errno::EINVAL => "invalid argument",
        errno::ENAMETOOLONG => "file name too long",
        errno::ENOSYS => "function not implemented",
        errno::ELOOP => "too many levels of symbolic links",
        _ => return None,
    })
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match describe(self.errno) {
            Some(text) => write!(f, "{}: {} (os error {})", self.context, text, self.errno),
            None => write!(f, "{}: os error {}", self.context, self.errno),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn display_has_context_and_description() {
        let e = Error::new("spawning the child", errno::ENOENT);
        assert_eq!(
            e.to_string(),
            "spawning the child: no such file or directory (os error 2)"
        );
        assert_eq!(Error::new("x", 99).to_string(), "x: os error 99");
        assert_eq!(e.raw_os_error(), 2);
        assert_eq!(e.context(), "spawning the child");
    }
}
