//! The error type of this crate.

/// A profile that cannot be compiled. Displays as `field: problem`, where the field is the
/// JSON path inside the profile (`syscalls[2].names[0]`), or as `problem` alone when the
/// whole profile is at fault; a caller holding a whole spec puts `linux.seccomp.` in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{problem}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct Error {
    /// The JSON path of the field, relative to the profile; empty for the whole profile.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

pub(crate) fn bad(field: impl Into<String>, problem: impl Into<String>) -> Error {
    Error {
        field: field.into(),
        problem: problem.into(),
    }
}
