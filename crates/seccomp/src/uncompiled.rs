//! A build without the compiler (feature `compile` off): `peapod-oci` for musl, which cannot
//! link Debian's libseccomp. It loads filters and reads them from a [`crate::FilterCache`]
//! that a build with the compiler filled; what is not there, it cannot make.

use oci_spec::runtime::LinuxSeccomp;

use crate::error::{bad, Error};
use crate::filter::Filter;
use crate::NO_COMPILER;

impl Filter {
    /// In a build without the compiler: always the error [`NO_COMPILER`].
    pub fn compile(_profile: &LinuxSeccomp) -> Result<Filter, Error> {
        Err(bad("", NO_COMPILER))
    }
}

/// In a build without the compiler: none (which architectures libseccomp knows is its
/// question).
pub fn supported_architectures() -> Vec<&'static str> {
    Vec::new()
}
