//! `regex`'s API as peapod's dependencies use it (`Regex::new`, `is_match`, `captures`,
//! `replace_all`, `RegexBuilder` with `size_limit`), on `regex-lite`; see Cargo.toml for why.
//! Its classes (`\d`, `\w`, `[[:xdigit:]]`) are ASCII, which is what the patterns mean: OCI
//! image references and CPU lists are ASCII.

pub use regex_lite::*;
