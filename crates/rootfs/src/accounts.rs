//! The account files of an image (`/etc/passwd`, `/etc/group`), read inside its root, so
//! that a link in the image cannot make peapod read the host's.

use std::path::Path;

use crate::{Error, InRoot, Result};

/// The most of `/etc/passwd` or `/etc/group` that is read.
pub const ACCOUNT_FILE_LIMIT: u64 = 4 << 20;

/// The lines of `/etc/NAME` (`passwd`, `group`) in `root`, split at `:`, without comments;
/// none when it does not exist (a dangling link included).
pub fn account_file(root: &InRoot, name: &str) -> Result<Vec<Vec<String>>> {
    let path = Path::new("/etc").join(name);
    let bytes = match root.read_file(&path, ACCOUNT_FILE_LIMIT) {
        Ok(bytes) => bytes,
        Err(Error::Resolve { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').map(str::to_owned).collect())
        .collect())
}

/// The home directory of `uid` in `root`'s `/etc/passwd` (the first entry with that uid),
/// or `None` when it has none.
pub fn home_of(root: &InRoot, uid: u32) -> Result<Option<String>> {
    let passwd = account_file(root, "passwd")?;
    Ok(passwd
        .iter()
        .find(|fields| fields.get(2).and_then(|f| f.parse::<u32>().ok()) == Some(uid))
        .and_then(|fields| fields.get(5).cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(passwd: Option<&str>) -> (tempfile::TempDir, InRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("etc");
        if let Some(text) = passwd {
            std::fs::write(dir.path().join("etc/passwd"), text).expect("passwd");
        }
        let root = InRoot::open(dir.path()).expect("open");
        (dir, root)
    }

    #[test]
    fn home_is_the_sixth_field_of_the_uids_entry() {
        let (_dir, root) = root_with(Some(
            "# users\nroot:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n\
             again:x:1000:1000::/elsewhere:/bin/sh\nshort:x:7\n",
        ));
        assert_eq!(home_of(&root, 0).unwrap().as_deref(), Some("/root"));
        assert_eq!(home_of(&root, 1000).unwrap().as_deref(), Some("/home/app"));
        assert_eq!(home_of(&root, 7).unwrap(), None);
        assert_eq!(home_of(&root, 4242).unwrap(), None);
    }

    #[test]
    fn no_passwd_means_no_home() {
        let (_dir, root) = root_with(None);
        assert_eq!(home_of(&root, 0).unwrap(), None);
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let (dir, root) = root_with(None);
        std::fs::create_dir(dir.path().join("srv")).expect("srv");
        std::fs::write(
            dir.path().join("srv/passwd"),
            "root:x:0:0::/inside:/bin/sh\n",
        )
        .expect("passwd");
        for target in ["/srv/passwd", "../../../../../../srv/passwd"] {
            let link = dir.path().join("etc/passwd");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link).expect("link");
            assert_eq!(
                home_of(&root, 0).unwrap().as_deref(),
                Some("/inside"),
                "{target}"
            );
        }
    }
}
