//! Host and domain names of a UTS namespace.

use crate::{Error, Result};

/// Sets the host name of the caller's UTS namespace.
pub fn set_hostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).map_err(|e| Error::Uts {
        what: "hostname",
        name: name.to_owned(),
        source: e.into(),
    })
}

/// Sets the NIS domain name of the caller's UTS namespace.
pub fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call; the
    // kernel copies them.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if ret == 0 {
        return Ok(());
    }
    Err(Error::Uts {
        what: "domainname",
        name: name.to_owned(),
        source: std::io::Error::last_os_error(),
    })
}
