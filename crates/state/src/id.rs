//! Container ids.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A container id that is safe as one path component: 1 to 1024 characters of letters,
/// digits, `_`, `+`, `-` and `.`, not starting with `.` (so never `.` or `..`), as runc allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContainerId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |problem| Error::InvalidId {
            id: s.to_owned(),
            problem,
        };
        if s.is_empty() {
            return Err(invalid("it is empty"));
        }
        if s.len() > 1024 {
            return Err(invalid("it is longer than 1024 characters"));
        }
        if s.starts_with('.') {
            return Err(invalid("it starts with '.'"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
        {
            return Err(invalid(
                "only letters, digits, '_', '+', '-' and '.' are allowed",
            ));
        }
        Ok(ContainerId(s.to_owned()))
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tricks_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b", "x\0y"] {
            assert!(bad.parse::<ContainerId>().is_err(), "{bad:?} accepted");
        }
        assert!("a".repeat(1025).parse::<ContainerId>().is_err());
    }

    #[test]
    fn ordinary_ids_are_accepted() {
        for good in ["web", "web-1", "a.b_c+d", "0123456789abcdef"] {
            assert_eq!(good.parse::<ContainerId>().expect("valid").as_str(), good);
        }
    }
}
