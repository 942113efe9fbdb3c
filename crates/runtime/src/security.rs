//! The privilege flags of `peapod run --rootfs`: `--cap-add`, `--cap-drop`, `--user` and
//! `--security-opt`, with Docker's meanings, applied to the spec built in memory.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, Context as _};
use oci_spec::runtime::{Capabilities, Capability, Spec};
use peapod_container::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES};
use peapod_rootfs::{account_file, InRoot};

use crate::seccomp_profile;

/// A capability named on the command line, or `ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapName {
    /// Every capability.
    All,
    /// This one.
    One(Capability),
}

/// `NET_RAW`, `CAP_NET_RAW`, `net_raw` or `ALL`.
pub fn parse_capability(s: &str) -> Result<CapName, String> {
    let upper = s.to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(CapName::All);
    }
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(name)
        .map(CapName::One)
        .map_err(|_| format!("unknown capability {s:?} (e.g. NET_ADMIN, CAP_SYS_TIME or ALL)"))
}

/// The default seccomp profile (see [`SecurityOpt`]) for a container whose bounding set
/// is `bounding`: containers-common's `seccomp.json` where installed, else peapod's own.
pub fn default_seccomp(bounding: &Capabilities) -> anyhow::Result<oci_spec::runtime::LinuxSeccomp> {
    seccomp_profile::default(bounding)
}

/// One `--security-opt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt {
    /// `seccomp=FILE`: the profile in FILE (the OCI `linux.seccomp` form, or Docker's).
    Seccomp(PathBuf),
    /// `seccomp=unconfined`: no filter (the default is podman's and Docker's profile).
    Unconfined,
    /// `no-new-privileges[=true|false]`.
    NoNewPrivileges(bool),
}

/// `seccomp=FILE|unconfined` or `no-new-privileges[=BOOL]`; `:` may stand for `=`, as in
/// Docker's older spelling.
pub fn parse_security_opt(s: &str) -> Result<SecurityOpt, String> {
    let (key, value) = match s.split_once(['=', ':']) {
        Some((key, value)) => (key, Some(value)),
        None => (s, None),
    };
    match (key, value) {
        ("seccomp", Some("unconfined")) => Ok(SecurityOpt::Unconfined),
        ("seccomp", Some(file)) if !file.is_empty() => Ok(SecurityOpt::Seccomp(file.into())),
        ("seccomp", _) => Err("seccomp needs a value: seccomp=FILE or seccomp=unconfined".into()),
        ("no-new-privileges", None | Some("true")) => Ok(SecurityOpt::NoNewPrivileges(true)),
        ("no-new-privileges", Some("false")) => Ok(SecurityOpt::NoNewPrivileges(false)),
        ("no-new-privileges", Some(other)) => Err(format!(
            "no-new-privileges takes true or false, not {other:?}"
        )),
        _ => Err(format!(
            "unsupported security option {s:?} (peapod knows seccomp=FILE|unconfined and \
             no-new-privileges[=true|false])"
        )),
    }
}

/// Docker's rule for `--cap-add` and `--cap-drop` on top of `basics`: with `ALL` added,
/// every capability but the dropped ones; with `ALL` dropped, only the added ones; otherwise
/// the basics less the dropped plus the added.
pub fn capabilities(basics: &[Capability], add: &[CapName], drop: &[CapName]) -> Capabilities {
    let named = |names: &[CapName]| -> Vec<Capability> {
        names
            .iter()
            .filter_map(|n| match n {
                CapName::One(cap) => Some(*cap),
                CapName::All => None,
            })
            .collect()
    };
    let (added, dropped) = (named(add), named(drop));
    if add.contains(&CapName::All) {
        ALL_CAPABILITIES
            .into_iter()
            .filter(|c| !dropped.contains(c))
            .collect()
    } else if drop.contains(&CapName::All) {
        added.into_iter().collect()
    } else {
        basics
            .iter()
            .copied()
            .filter(|c| !dropped.contains(c))
            .chain(added)
            .collect()
    }
}

/// `--user USER[:GROUP]`, split; each part a number or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserArg {
    user: String,
    group: Option<String>,
}

/// `USER[:GROUP]`, checked for form (names are looked up later, in the rootfs).
pub fn parse_user(s: &str) -> Result<UserArg, String> {
    let (user, group) = match s.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (s, None),
    };
    let valid = |part: &str| !part.is_empty() && !part.contains([':', '\n', '\0']);
    if !valid(user) || group.is_some_and(|g| !valid(g)) {
        return Err("expected UID[:GID] or NAME[:GROUP]".into());
    }
    Ok(UserArg {
        user: user.to_owned(),
        group: group.map(str::to_owned),
    })
}

/// The uid, gid and supplementary groups for `user`, as Docker finds them: names and the
/// primary group of a numeric uid from the rootfs's `/etc/passwd` (read inside the root, so
/// a link in the image cannot point at the host's), supplementary groups from `/etc/group`.
/// A numeric uid without an entry gets gid 0.
pub fn resolve_user(rootfs: &Path, user: &UserArg) -> anyhow::Result<(u32, u32, Vec<u32>)> {
    let root = InRoot::open(rootfs)?;
    let passwd = account_file(&root, "passwd")?;
    let groups = account_file(&root, "group")?;
    let id = |fields: &Vec<String>, i: usize| fields.get(i).and_then(|f| f.parse::<u32>().ok());
    let entry = match user.user.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|p| id(p, 2) == Some(uid)),
        Err(_) => Some(
            passwd
                .iter()
                .find(|p| p.first() == Some(&user.user))
                .ok_or_else(|| anyhow!("no user {:?} in the rootfs's /etc/passwd", user.user))?,
        ),
    };
    let uid = match user.user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => entry
            .and_then(|p| id(p, 2))
            .ok_or_else(|| anyhow!("user {:?}: invalid uid in /etc/passwd", user.user))?,
    };
    let gid = match &user.group {
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|g| g.first() == Some(group))
                .and_then(|g| id(g, 2))
                .ok_or_else(|| anyhow!("no group {group:?} in the rootfs's /etc/group"))?,
        },
        None => entry.and_then(|p| id(p, 3)).unwrap_or(0),
    };
    let mut additional = Vec::new();
    if let Some(name) = entry.and_then(|p| p.first()) {
        for g in &groups {
            let member = g
                .get(3)
                .is_some_and(|members| members.split(',').any(|m| m == name));
            if let Some(group_gid) = id(g, 2).filter(|g| member && *g != gid) {
                if !additional.contains(&group_gid) {
                    additional.push(group_gid);
                }
            }
        }
    }
    Ok((uid, gid, additional))
}

/// The flags of this module, as they change `spec` (also what `peapod-pod` maps a
/// manifest's `securityContext` onto, so that both mean the same).
#[derive(Debug, Clone, Copy)]
pub struct SecurityArgs<'a> {
    /// `--cap-add`.
    pub cap_add: &'a [CapName],
    /// `--cap-drop`.
    pub cap_drop: &'a [CapName],
    /// `--user`.
    pub user: Option<&'a UserArg>,
    /// `--security-opt`.
    pub security_opt: &'a [SecurityOpt],
}

impl SecurityArgs<'_> {
    /// Whether any of them was given (a bundle's config.json says all of this itself).
    pub(crate) fn any(&self) -> Option<&'static str> {
        if !self.cap_add.is_empty() {
            Some("--cap-add")
        } else if !self.cap_drop.is_empty() {
            Some("--cap-drop")
        } else if self.user.is_some() {
            Some("--user")
        } else if !self.security_opt.is_empty() {
            Some("--security-opt")
        } else {
            None
        }
    }

    /// Sets the process's user, capabilities and `no_new_privs`, and `linux.seccomp`. A user
    /// other than root keeps the capabilities only in its bounding set, as with Docker: its
    /// effective and permitted sets are empty. `rootfs` is the container's root on the host,
    /// where user and group names are looked up.
    pub fn apply(&self, spec: &mut Spec, rootfs: &Path) -> anyhow::Result<()> {
        let user = self
            .user
            .map(|u| resolve_user(rootfs, u))
            .transpose()
            .context("--user")?;
        let caps = capabilities(&DEFAULT_CAPABILITIES, self.cap_add, self.cap_drop);
        // The last seccomp option counts; none gives the default profile.
        enum Profile<'p> {
            Default,
            File(&'p Path),
            Unconfined,
        }
        let mut profile = Profile::Default;
        let mut no_new_privileges = None;
        for opt in self.security_opt {
            match opt {
                SecurityOpt::Seccomp(path) => profile = Profile::File(path),
                SecurityOpt::Unconfined => profile = Profile::Unconfined,
                SecurityOpt::NoNewPrivileges(on) => no_new_privileges = Some(*on),
            }
        }
        // Docker's format has rules that depend on the capabilities: the final ones.
        let seccomp = match profile {
            Profile::Default => Some(seccomp_profile::default(&caps)?),
            Profile::File(path) => Some(seccomp_profile::load(path, &caps)?),
            Profile::Unconfined => None,
        };
        if let Some(process) = spec.process_mut() {
            if let Some((uid, gid, additional)) = &user {
                let mut spec_user = process.user().clone();
                spec_user.set_uid(*uid);
                spec_user.set_gid(*gid);
                spec_user.set_additional_gids(Some(additional.clone()).filter(|a| !a.is_empty()));
                process.set_user(spec_user);
            }
            let root = !matches!(user, Some((uid, _, _)) if uid != 0);
            if let Some(mut sets) = process.capabilities().clone() {
                let held = if root {
                    caps.clone()
                } else {
                    Capabilities::new()
                };
                sets.set_bounding(Some(caps));
                sets.set_effective(Some(held.clone()));
                sets.set_permitted(Some(held));
                process.set_capabilities(Some(sets));
            }
            if let Some(on) = no_new_privileges {
                process.set_no_new_privileges(Some(on));
            }
        }
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(seccomp);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(add: &[&str], drop: &[&str]) -> Vec<String> {
        let parse = |names: &[&str]| -> Vec<CapName> {
            names
                .iter()
                .map(|n| parse_capability(n).expect("cap"))
                .collect()
        };
        let mut names: Vec<String> = capabilities(&DEFAULT_CAPABILITIES, &parse(add), &parse(drop))
            .into_iter()
            .map(|c| c.to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn capability_names_are_forgiving() {
        assert_eq!(
            parse_capability("net_raw"),
            Ok(CapName::One(Capability::NetRaw))
        );
        assert_eq!(
            parse_capability("CAP_SYS_ADMIN"),
            Ok(CapName::One(Capability::SysAdmin))
        );
        assert_eq!(
            parse_capability("Cap_Kill"),
            Ok(CapName::One(Capability::Kill))
        );
        assert_eq!(parse_capability("all"), Ok(CapName::All));
        assert!(parse_capability("CAP_FLY").unwrap_err().contains("CAP_FLY"));
    }

    #[test]
    fn cap_add_and_drop_follow_docker() {
        assert_eq!(caps(&["NET_RAW"], &["ALL"]), ["NET_RAW"]);
        assert_eq!(caps(&[], &["ALL"]), Vec::<String>::new());
        assert_eq!(
            caps(&["ALL"], &["SYS_ADMIN"]).len(),
            ALL_CAPABILITIES.len() - 1
        );
        let fewer = caps(&["SYS_TIME"], &["NET_RAW", "MKNOD"]);
        assert_eq!(fewer.len(), DEFAULT_CAPABILITIES.len() - 1);
        assert!(fewer.contains(&"SYS_TIME".to_owned()));
        assert!(!fewer.contains(&"NET_RAW".to_owned()));
    }

    #[test]
    fn security_options() {
        assert_eq!(
            parse_security_opt("no-new-privileges"),
            Ok(SecurityOpt::NoNewPrivileges(true))
        );
        assert_eq!(
            parse_security_opt("no-new-privileges:false"),
            Ok(SecurityOpt::NoNewPrivileges(false))
        );
        assert_eq!(
            parse_security_opt("seccomp=unconfined"),
            Ok(SecurityOpt::Unconfined)
        );
        assert_eq!(
            parse_security_opt("seccomp=/p.json"),
            Ok(SecurityOpt::Seccomp("/p.json".into()))
        );
        assert!(parse_security_opt("seccomp").is_err());
        assert!(parse_security_opt("apparmor=x")
            .unwrap_err()
            .contains("unsupported"));
        assert!(parse_security_opt("no-new-privileges=maybe").is_err());
    }

    #[test]
    fn users_resolve_from_the_rootfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).expect("etc");
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(
            etc.join("group"),
            "root:x:0:\napp:x:1001:\nwheel:x:10:root,app\n",
        )
        .expect("group");
        let user = |s: &str| resolve_user(dir.path(), &parse_user(s).expect("form"));
        assert_eq!(user("app").expect("app"), (1000, 1001, vec![10]));
        assert_eq!(user("1000").expect("1000"), (1000, 1001, vec![10]));
        assert_eq!(user("1000:wheel").expect("group"), (1000, 10, vec![]));
        assert_eq!(user("4242:7").expect("numbers"), (4242, 7, vec![]));
        assert_eq!(user("4242").expect("no entry"), (4242, 0, vec![]));
        assert!(user("nobody").unwrap_err().to_string().contains("nobody"));
        assert!(parse_user("1000:").is_err());
    }
}
