//! `run --userns`: which user namespace a container gets, as podman's flag names them.
//!
//! Only the modes that are real here: `host` (root: the host's, which is root's default;
//! rootless: the caller's ranges under its own id as root, which is the default, as podman's
//! rootless `host` is) and `keep-id` (rootless only: the caller's ids as themselves, the
//! ranges around them, the process running as the caller). `auto`, `nomap` and the others
//! are refused in one line saying why.

use oci_spec::runtime::Spec;
use peapod_container::{default_spec, spec_with_maps};
use peapod_ns::RootlessMaps;

use crate::flags::{rootless_ids, RunFlags};
use crate::security::{parse_user, UserArg};
use crate::{Error, Result};

/// A `--userns` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNs {
    /// `host`: as root, no user namespace; rootless, the default one.
    Host,
    /// `keep-id`: the caller's uid and gid mapped to themselves, the process runs as them.
    KeepId,
}

/// `--userns MODE`: `host` or `keep-id`; podman's other modes are refused with the reason.
pub fn parse_userns(s: &str) -> std::result::Result<UserNs, String> {
    let (mode, options) = s.split_once(':').unwrap_or((s, ""));
    match (mode, options) {
        ("host", "") => Ok(UserNs::Host),
        ("keep-id", "") => Ok(UserNs::KeepId),
        ("keep-id", _) => Err(
            "keep-id's options are not supported: keep-id maps the caller's own uid and gid"
                .to_owned(),
        ),
        ("auto", _) => Err(
            "auto is not supported: it needs a pool of ids shared out among all containers, \
             which peapod does not keep (rootless, the default maps your subordinate ranges)"
                .to_owned(),
        ),
        ("nomap", _) => Err(
            "nomap is not supported: an image's layers are owned for the default map, where \
             the caller is root"
                .to_owned(),
        ),
        _ => Err("expected host or keep-id".to_owned()),
    }
}

/// The spec a container starts from, with the user namespace `args.userns` asks for:
/// [`default_spec`], or under `keep-id` one whose maps are [`RootlessMaps::keep_id`]'s.
pub(crate) fn base_spec(args: &RunFlags, rootless: bool) -> Result<Spec> {
    match (args.userns, rootless) {
        (Some(UserNs::KeepId), false) => Err(Error::usage(anyhow::anyhow!(
            "--userns keep-id is for rootless containers (as podman's): as root a container \
             has no user namespace; --user UID:GID runs it as another id"
        ))),
        (Some(UserNs::KeepId), true) => {
            let (uid, gid) = rootless_ids();
            Ok(spec_with_maps(Some(RootlessMaps::keep_id(uid, gid))))
        }
        (None | Some(UserNs::Host), _) => Ok(default_spec(rootless.then(rootless_ids))),
    }
}

/// Under `keep-id` without `--user`, the user the process runs as: the caller's ids.
pub(crate) fn keep_id_user(args: &RunFlags, rootless: bool) -> Option<UserArg> {
    let keep = rootless && args.userns == Some(UserNs::KeepId) && args.user.is_none();
    let (uid, gid) = rootless_ids();
    keep.then(|| parse_user(&format!("{uid}:{gid}")).ok())
        .flatten()
}

/// `keep-id` goes with `--rootfs`: an image's layers are owned for the default map (the
/// caller as root, the ranges above it), under which keep-id's ids would show other owners;
/// podman makes a re-owned copy of the layers, peapod does not.
pub fn refuse_with_image(args: &RunFlags, rootless: bool) -> Result<()> {
    match rootless && args.userns == Some(UserNs::KeepId) {
        true => Err(Error::usage(anyhow::anyhow!(
            "--userns keep-id (yours or your pod's) goes with --rootfs: an image's layers are owned for the default \
             map (you as root), and peapod makes no re-owned copy of them as podman does"
        ))),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userns_takes_host_and_keep_id_and_says_why_not_the_others() {
        assert_eq!(parse_userns("host"), Ok(UserNs::Host));
        assert_eq!(parse_userns("keep-id"), Ok(UserNs::KeepId));
        for (bad, why) in [
            ("auto", "pool of ids"),
            ("auto:size=100", "pool of ids"),
            ("nomap", "owned for the default map"),
            ("keep-id:uid=5", "options are not supported"),
            ("private", "expected host or keep-id"),
            ("ns:/proc/1/ns/user", "expected host or keep-id"),
            ("", "expected host or keep-id"),
        ] {
            let error = parse_userns(bad).expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn keep_id_is_refused_to_root_and_with_an_image() {
        let flags = RunFlags {
            userns: Some(UserNs::KeepId),
            ..RunFlags::default()
        };
        let refused = base_spec(&flags, false).expect_err("root");
        assert!(format!("{refused:?}").contains("for rootless containers"));
        assert!(refuse_with_image(&flags, true).is_err());
        assert!(refuse_with_image(&flags, false).is_ok());
        let host = RunFlags {
            userns: Some(UserNs::Host),
            ..RunFlags::default()
        };
        let spec = base_spec(&host, false).expect("root's host");
        let namespaces = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        assert!(namespaces
            .iter()
            .all(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::User));
    }
}
