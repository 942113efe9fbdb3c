//! Container ids.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A container id that is safe as one path component: 1 to 1024 characters of letters,
/// digits, `_`, `+`, `-` and `.`, not starting with `.` (so never `.` or `..`), as runc allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// The length of a generated id: 64 lowercase hex digits, as docker's.
    pub const GENERATED_LEN: usize = 64;
    /// The shortest prefix that names a generated id (see `Store::resolve`), as docker's
    /// shortest: fewer would too often begin several.
    pub const MIN_PREFIX: usize = 3;
    /// How many digits tables show of a generated id, as docker's.
    pub const SHORT_LEN: usize = 12;

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this id has the form peapod generates (`run` without `--name`): 64 lowercase
    /// hex digits. Only those are shortened in tables and matched by prefix; a name never is.
    pub fn is_generated(&self) -> bool {
        self.0.len() == Self::GENERATED_LEN && is_lower_hex(&self.0)
    }

    /// Whether this id could be a shortened generated id.
    pub(crate) fn could_be_prefix(&self) -> bool {
        (Self::MIN_PREFIX..Self::GENERATED_LEN).contains(&self.0.len()) && is_lower_hex(&self.0)
    }

    /// The id as tables show it: the first [`Self::SHORT_LEN`] digits of a generated one,
    /// any other whole.
    pub fn short(&self) -> &str {
        match self.is_generated() {
            true => &self.0[..Self::SHORT_LEN],
            false => &self.0,
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
    fn only_generated_ids_are_shortened() {
        let generated: ContainerId = "ab".repeat(32).parse().expect("valid");
        assert!(generated.is_generated());
        assert_eq!(generated.short(), "abababababab");
        let name: ContainerId = "web-server-with-a-long-name".parse().expect("valid");
        assert!(!name.is_generated());
        assert_eq!(name.short(), name.as_str());
        let upper: ContainerId = "AB".repeat(32).parse().expect("valid");
        assert!(!upper.is_generated());
    }

    #[test]
    fn ordinary_ids_are_accepted() {
        for good in ["web", "web-1", "a.b_c+d", "0123456789abcdef"] {
            assert_eq!(good.parse::<ContainerId>().expect("valid").as_str(), good);
        }
    }
}
