//! `linux.resources.devices` as runc reads it, and as the eBPF program that enforces it on
//! cgroup v2 (where there is no devices controller).
//!
//! The rules are applied in order to a model of the v1 devices controller, as runc's
//! emulator does: a default (allow or deny every device) and exceptions to it. A rule of
//! type `a` resets both; any other rule either adds access to an exception or takes access
//! away from one, and a later rule thus overrides an earlier one. The standard devices
//! ([`STANDARD_DEVICES`]) come after the spec's rules. The program then checks the request
//! against each exception and answers the default when none matches.

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::bpf::{Insn, R0, R1, R2, R3, R4, R5};
use crate::{Error, Result};

/// Block or character device (`BPF_DEVCG_DEV_BLOCK`, `BPF_DEVCG_DEV_CHAR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Block = 1,
    Char = 2,
}

/// A set of accesses, as the kernel's bits: `BPF_DEVCG_ACC_MKNOD` 1, `_READ` 2, `_WRITE` 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Access(u8);

impl Access {
    pub(crate) const MKNOD: Access = Access(1);
    pub(crate) const READ: Access = Access(2);
    pub(crate) const WRITE: Access = Access(4);
    pub(crate) const ALL: Access = Access(7);

    fn parse(letters: &str) -> Option<Access> {
        letters.chars().try_fold(Access(0), |acc, c| match c {
            'm' => Some(Access(acc.0 | Access::MKNOD.0)),
            'r' => Some(Access(acc.0 | Access::READ.0)),
            'w' => Some(Access(acc.0 | Access::WRITE.0)),
            _ => None,
        })
    }

    fn letters(self) -> String {
        [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ]
        .iter()
        .filter(|(a, _)| self.0 & a.0 != 0)
        .map(|(_, c)| c)
        .collect()
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn overlaps(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }
}

/// The devices a rule names: one kind, and a major and minor number or any (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Devices {
    kind: Kind,
    major: Option<u32>,
    minor: Option<u32>,
}

impl Devices {
    #[cfg(test)]
    fn covers(&self, kind: Kind, major: u32, minor: u32) -> bool {
        self.kind == kind
            && self.major.map_or(true, |m| m == major)
            && self.minor.map_or(true, |m| m == minor)
    }
}

/// One rule, checked: `devices` is `None` for type `a`, every device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    allow: bool,
    devices: Option<Devices>,
    access: Access,
}

const fn standard(kind: Kind, major: Option<u32>, minor: Option<u32>, access: Access) -> Rule {
    Rule {
        allow: true,
        devices: Some(Devices { kind, major, minor }),
        access,
    }
}

/// The devices every container may use whatever its rules say (runc's `AllowedDevices`):
/// `mknod` of any node, and the standard character devices. Applied after the spec's rules.
pub(crate) const STANDARD_DEVICES: &[Rule] = &[
    standard(Kind::Char, None, None, Access::MKNOD),
    standard(Kind::Block, None, None, Access::MKNOD),
    standard(Kind::Char, Some(1), Some(3), Access::ALL), // null
    standard(Kind::Char, Some(1), Some(5), Access::ALL), // zero
    standard(Kind::Char, Some(1), Some(7), Access::ALL), // full
    standard(Kind::Char, Some(1), Some(8), Access::ALL), // random
    standard(Kind::Char, Some(1), Some(9), Access::ALL), // urandom
    standard(Kind::Char, Some(5), Some(0), Access::ALL), // tty
    standard(Kind::Char, Some(5), Some(1), Access::ALL), // console
    standard(Kind::Char, Some(5), Some(2), Access::ALL), // ptmx
    standard(Kind::Char, Some(136), None, Access::ALL),  // pts
    standard(Kind::Char, Some(10), Some(200), Access::ALL), // net/tun
];

impl Rule {
    /// `linux.resources.devices[index]`, checked: type `a`, `b`, `c` or `u` (a character
    /// device too) and unset meaning `a`; a number that is unset or negative means any; an
    /// access of `r`, `w` and `m`, unset meaning all three.
    pub(crate) fn from_oci(index: usize, rule: &LinuxDeviceCgroup) -> Result<Rule> {
        let bad = |problem: String| Error::DeviceRules(format!("[{index}]: {problem}"));
        let kind = match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(Kind::Block),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(Kind::Char),
            LinuxDeviceType::P => {
                return Err(bad(
                    "type \"p\" (a FIFO) is not a device the kernel filters".into(),
                ))
            }
        };
        let number = |n: Option<i64>, name: &str| match n {
            None => Ok(None),
            Some(n) if n < 0 => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| bad(format!("{name} {n} is too large"))),
        };
        let major = number(rule.major(), "major")?;
        let minor = number(rule.minor(), "minor")?;
        let access = match rule.access().as_deref() {
            None => Access::ALL,
            Some(letters) => Access::parse(letters)
                .ok_or_else(|| bad(format!("access {letters:?}: only the letters r, w and m")))?,
        };
        Ok(Rule {
            allow: rule.allow(),
            devices: kind.map(|kind| Devices { kind, major, minor }),
            access,
        })
    }

    /// The rule as a v1 `devices.allow`/`devices.deny` line: `c 1:3 rwm`, `a *:* rwm`.
    pub(crate) fn v1_line(&self) -> String {
        let access = self.access.letters();
        let Some(d) = self.devices else {
            return format!("a *:* {access}");
        };
        let kind = match d.kind {
            Kind::Block => 'b',
            Kind::Char => 'c',
        };
        let number = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
        format!("{kind} {}:{} {access}", number(d.major), number(d.minor))
    }

    /// Whether it allows (else denies).
    pub(crate) fn allow(&self) -> bool {
        self.allow
    }
}

/// What a container's device rules come to: a default for every device, and exceptions to
/// it. Made with [`DeviceFilter::new`] before anything is changed on the host, and given to
/// [`Cgroup::filter_devices`](crate::Cgroup::filter_devices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFilter {
    default_allow: bool,
    /// The devices for which the answer is the opposite of the default, with the accesses
    /// it is so for. Never holds an empty access.
    exceptions: BTreeMap<Devices, Access>,
}

impl DeviceFilter {
    /// The filter of `rules` (`linux.resources.devices`) followed by the standard devices.
    /// With no rules every device but the standard ones is denied, as with runc. Rules runc
    /// refuses are refused: a type, number or access that is not one, and a deny (or allow)
    /// of part of what a wider allow (or deny) rule with the same access gave, which the
    /// kernel's v1 controller would silently ignore.
    pub fn new(rules: &[LinuxDeviceCgroup]) -> Result<DeviceFilter> {
        let mut filter = DeviceFilter {
            default_allow: false,
            exceptions: BTreeMap::new(),
        };
        for (index, rule) in rules.iter().enumerate() {
            filter.apply(&Rule::from_oci(index, rule)?)?;
        }
        for rule in STANDARD_DEVICES {
            filter.apply(rule)?;
        }
        Ok(filter)
    }

    fn apply(&mut self, rule: &Rule) -> Result<()> {
        let Some(devices) = rule.devices else {
            // Type `a`: every device, with whatever access: a new default and no exception.
            self.default_allow = rule.allow;
            self.exceptions.clear();
            return Ok(());
        };
        if rule.access.is_empty() {
            return Ok(());
        }
        if rule.allow != self.default_allow {
            let access = self.exceptions.entry(devices).or_default();
            access.0 |= rule.access.0;
            return Ok(());
        }
        // The rule takes access back from an exception. It cannot take it from part of a
        // wider one (`c 1:3` out of `c 1:*`): the exceptions would have to be split over
        // every other number. runc refuses this rather than ignoring it as the kernel does.
        let wider = [
            Devices {
                major: None,
                ..devices
            },
            Devices {
                minor: None,
                ..devices
            },
            Devices {
                major: None,
                minor: None,
                ..devices
            },
        ];
        for other in wider.iter().filter(|w| **w != devices) {
            if let Some(access) = self.exceptions.get(other) {
                if access.overlaps(rule.access) {
                    let theirs = Rule {
                        allow: !rule.allow,
                        devices: Some(*other),
                        access: *access,
                    };
                    return Err(Error::DeviceRules(format!(
                        "{} {} cannot be carved out of the wider {} {}",
                        verb(rule.allow),
                        rule.v1_line(),
                        verb(theirs.allow),
                        theirs.v1_line()
                    )));
                }
            }
        }
        if let Some(access) = self.exceptions.get_mut(&devices) {
            access.0 &= !rule.access.0;
            if access.is_empty() {
                self.exceptions.remove(&devices);
            }
        }
        Ok(())
    }

    /// Whether any access to any device is denied: when not, no program is needed.
    pub fn denies_any(&self) -> bool {
        !self.default_allow || !self.exceptions.is_empty()
    }

    /// Whether `access` (one or several bits at once, as the kernel asks: an `open` for
    /// reading and writing is one request) to the device `kind` `major:minor` is allowed.
    #[cfg(test)]
    pub(crate) fn allows(&self, kind: Kind, major: u32, minor: u32, access: Access) -> bool {
        let excepted = self.exceptions.iter().any(|(devices, allowed)| {
            devices.covers(kind, major, minor) && access.0 & !allowed.0 == 0
        });
        excepted != self.default_allow
    }

    /// The eBPF program, or `None` when the rules allow everything.
    ///
    /// The kernel calls it with R1 pointing to `struct bpf_cgroup_dev_ctx { u32 access_type;
    /// u32 major; u32 minor; }`, where `access_type` is the accesses asked for, shifted left
    /// by 16, or'ed with the device's kind; it returns 1 to allow and 0 to deny. The program
    /// unpacks the context into R2 to R5, then has one block per exception, each jumping to
    /// the next block at the first field that does not match and else returning the opposite
    /// of the default; after the last block it returns the default. The exceptions all
    /// answer alike, so their order does not matter.
    pub(crate) fn program(&self) -> Option<Vec<Insn>> {
        if !self.denies_any() {
            return None;
        }
        let mut insns = vec![
            // R2 = the kind: the low 16 bits of access_type.
            Insn::load_u32(R2, R1, 0),
            Insn::and32(R2, 0xffff),
            // R3 = the accesses asked for: its high 16 bits.
            Insn::load_u32(R3, R1, 0),
            Insn::rsh32(R3, 16),
            // R4 = major, R5 = minor.
            Insn::load_u32(R4, R1, 4),
            Insn::load_u32(R5, R1, 8),
        ];
        let answer = |allow: bool| i32::from(allow);
        for (devices, access) in &self.exceptions {
            // Each test is "if the field differs, go to the next block"; the offsets are
            // filled in once the block's length is known.
            let mut block = vec![Insn::jne(R2, devices.kind as i32, 0)];
            if *access != Access::ALL {
                // Every access asked for must be among those excepted: R1 = R3 & access
                // differs from R3 when one is not. R1 (the context) is free once unpacked.
                block.extend([
                    Insn::mov32_reg(R1, R3),
                    Insn::and32(R1, i32::from(access.0)),
                    Insn::jne_reg(R1, R3, 0),
                ]);
            }
            // The numbers are compared in 64 bits with the immediate sign-extended, so one
            // above i32::MAX never matches: right, since no device has one (majors have 12
            // bits and minors 20).
            if let Some(major) = devices.major {
                block.push(Insn::jne(R4, major as i32, 0));
            }
            if let Some(minor) = devices.minor {
                block.push(Insn::jne(R5, minor as i32, 0));
            }
            block.extend([Insn::mov32(R0, answer(!self.default_allow)), Insn::exit()]);
            // A jump's offset counts from the instruction after it: to the block's end.
            let len = block.len();
            for (i, insn) in block.iter_mut().enumerate() {
                if insn.is_jump() {
                    *insn = insn.with_offset((len - i - 1) as i16);
                }
            }
            insns.extend(block);
        }
        insns.push(Insn::mov32(R0, answer(self.default_allow)));
        insns.push(Insn::exit());
        Some(insns)
    }
}

fn verb(allow: bool) -> &'static str {
    if allow {
        "allow"
    } else {
        "deny"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).expect("rules json")
    }

    fn filter(json: &str) -> DeviceFilter {
        DeviceFilter::new(&rules(json)).expect("filter")
    }

    const R: Access = Access::READ;
    const W: Access = Access::WRITE;
    const M: Access = Access::MKNOD;
    const RW: Access = Access(2 | 4);
    use Kind::{Block as B, Char as C};

    #[test]
    fn runc_default_denies_all_but_the_standard_devices() {
        for f in [
            filter(r#"[{"allow": false, "access": "rwm"}]"#),
            // No rules at all is the same, as with runc.
            filter("[]"),
        ] {
            assert!(f.allows(C, 1, 3, RW), "null");
            assert!(f.allows(C, 1, 9, R), "urandom");
            assert!(f.allows(C, 136, 7, RW), "a pts");
            assert!(f.allows(C, 10, 200, RW), "tun");
            assert!(f.allows(C, 4, 64, M), "mknod of anything");
            assert!(f.allows(B, 8, 0, M), "mknod of a disk");
            assert!(!f.allows(C, 4, 64, W), "the serial console");
            assert!(!f.allows(C, 1, 11, R), "kmsg");
            assert!(!f.allows(B, 8, 0, R), "a disk");
            assert!(!f.allows(C, 1, 200, R));
            assert!(f.denies_any());
        }
    }

    #[test]
    fn a_later_rule_overrides_an_earlier_one() {
        let f = filter(
            r#"[{"allow": false},
                {"allow": true, "type": "c", "major": 1, "minor": 200, "access": "rw"},
                {"allow": false, "type": "c", "major": 1, "minor": 200, "access": "w"}]"#,
        );
        assert!(f.allows(C, 1, 200, R));
        assert!(!f.allows(C, 1, 200, W));
        assert!(
            !f.allows(C, 1, 200, RW),
            "one request for both is refused whole"
        );
        assert!(
            !f.allows(B, 1, 200, R),
            "a block device of that number is another"
        );
        let f = filter(
            r#"[{"allow": false},
                {"allow": true, "type": "b", "major": 7, "access": "r"},
                {"allow": true, "type": "b", "major": 7, "minor": 0, "access": "w"}]"#,
        );
        assert!(f.allows(B, 7, 3, R), "a wildcard minor");
        assert!(!f.allows(B, 7, 3, W));
        assert!(f.allows(B, 7, 0, W));
        assert!(!f.allows(B, 8, 0, R));
    }

    #[test]
    fn a_wildcard_rule_resets_everything_before_it() {
        let allow_all = filter(
            r#"[{"allow": false, "type": "c", "major": 1, "minor": 200},
                {"allow": true, "type": "a"}]"#,
        );
        assert!(allow_all.allows(C, 1, 200, RW));
        assert!(allow_all.allows(B, 8, 0, RW));
        assert!(!allow_all.denies_any(), "no program is needed");
        assert_eq!(allow_all.program(), None);
        let deny_all = filter(
            r#"[{"allow": true, "type": "c", "major": 1, "minor": 200},
                {"allow": false}]"#,
        );
        assert!(!deny_all.allows(C, 1, 200, R));
        assert!(
            deny_all.allows(C, 1, 3, R),
            "the standard devices come after"
        );
    }

    #[test]
    fn after_allow_all_only_the_denied_devices_are_denied() {
        let f = filter(
            r#"[{"allow": true},
                {"allow": false, "type": "b", "major": 8, "access": "rw"},
                {"allow": false, "type": "c", "major": 4, "minor": 64}]"#,
        );
        assert!(!f.allows(B, 8, 0, R));
        assert!(!f.allows(B, 8, 16, W));
        assert!(
            f.allows(B, 8, 0, M),
            "mknod was not denied (and is standard)"
        );
        assert!(!f.allows(C, 4, 64, R));
        assert!(f.allows(C, 4, 65, RW));
        assert!(f.allows(C, 1, 200, RW));
        assert!(f.denies_any());
    }

    #[test]
    fn carving_a_device_out_of_a_wider_rule_is_refused() {
        let err = DeviceFilter::new(&rules(
            r#"[{"allow": false},
                {"allow": true, "type": "c", "major": 1, "access": "r"},
                {"allow": false, "type": "c", "major": 1, "minor": 200, "access": "r"}]"#,
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.resources.devices: deny c 1:200 r cannot be carved out of the wider \
             allow c 1:* r"
        );
        // Another access of the same devices is not part of the wider rule.
        filter(
            r#"[{"allow": false},
                {"allow": true, "type": "c", "major": 1, "access": "r"},
                {"allow": false, "type": "c", "major": 1, "minor": 200, "access": "w"}]"#,
        );
    }

    #[test]
    fn bad_rules_are_refused_naming_them() {
        for (json, wanted) in [
            (
                r#"[{"allow": true, "type": "p"}]"#,
                "linux.resources.devices: [0]: type \"p\" (a FIFO) is not a device the kernel \
                 filters",
            ),
            (
                r#"[{"allow": false}, {"allow": true, "type": "c", "major": 4294967296}]"#,
                "linux.resources.devices: [1]: major 4294967296 is too large",
            ),
            (
                r#"[{"allow": true, "type": "c", "access": "rx"}]"#,
                "linux.resources.devices: [0]: access \"rx\": only the letters r, w and m",
            ),
        ] {
            let err = DeviceFilter::new(&rules(json)).unwrap_err();
            assert_eq!(err.to_string(), wanted);
        }
        // `u` (unbuffered) is a character device; -1 is any.
        let f = filter(r#"[{"allow": true, "type": "u", "major": 1, "minor": -1}]"#);
        assert!(f.allows(C, 1, 200, RW));
    }

    #[test]
    fn v1_lines() {
        let line = |json: &str| {
            let rule: LinuxDeviceCgroup = serde_json::from_str(json).expect("rule");
            Rule::from_oci(0, &rule).expect("rule").v1_line()
        };
        assert_eq!(line(r#"{"allow": false}"#), "a *:* rwm");
        assert_eq!(
            line(r#"{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "mr"}"#),
            "c 1:3 rm"
        );
        assert_eq!(
            line(r#"{"allow": true, "type": "b", "minor": 0}"#),
            "b *:0 rwm"
        );
        assert_eq!(STANDARD_DEVICES[10].v1_line(), "c 136:* rwm");
    }

    #[test]
    fn every_jump_of_the_program_lands_on_a_block_or_the_default() {
        let f = filter(
            r#"[{"allow": false}, {"allow": true, "type": "b", "major": 7, "access": "r"}]"#,
        );
        let insns = f.program().expect("a program");
        // Blocks start after the 6 instructions that unpack the context; each ends with
        // `exit`, and the program with the default and `exit`.
        let starts: Vec<usize> = std::iter::once(6)
            .chain(
                insns
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| i.is_exit())
                    .map(|(n, _)| n + 1),
            )
            .filter(|n| *n < insns.len())
            .collect();
        // A block per exception, then the default's.
        assert_eq!(starts.len(), f.exceptions.len() + 1, "{insns:?}");
        for (n, insn) in insns.iter().enumerate() {
            if insn.is_jump() {
                let off = insn.offset();
                let target = n + 1 + off as usize;
                let next_block = starts.iter().find(|s| **s > n).expect("a later block");
                assert_eq!(target, *next_block, "jump at {n}: {insns:?}");
            }
        }
        assert!(insns.last().expect("last").is_exit());
        assert_eq!(
            insns[insns.len() - 2],
            Insn::mov32(R0, 0),
            "deny by default"
        );
    }
}
