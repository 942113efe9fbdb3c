//! From an OCI profile to BPF, with libseccomp. Everything in the profile is checked here, so
//! that a bad profile fails before a container exists.

#[cfg(feature = "compile")]
use std::io::{Read, Seek};
#[cfg(feature = "compile")]
use std::os::fd::{FromRawFd, OwnedFd};
#[cfg(feature = "compile")]
use std::str::FromStr;

#[cfg(feature = "compile")]
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
#[cfg(feature = "compile")]
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

#[cfg(feature = "compile")]
use crate::error::{bad, Error};
#[cfg(feature = "compile")]
use crate::filter::{Filter, Instruction};

/// The actions a profile may use (`SCMP_ACT_NOTIFY` is refused).
pub const ACTIONS: [&str; 8] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// The argument comparisons a profile may use.
pub const OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The filter flags a profile may use.
pub const FLAGS: [&str; 3] = [
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_TSYNC",
];

/// Every architecture the runtime spec names.
#[cfg(feature = "compile")]
const ARCHITECTURES: [&str; 24] = [
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
    "SCMP_ARCH_NATIVE",
];

/// The architectures a profile may list here: those the installed libseccomp knows (it
/// depends on its version) and can filter for beside the native one (one filter cannot mix
/// byte orders, so on x86_64 the big-endian ones are out). Each is tried in a fresh filter.
#[cfg(feature = "compile")]
pub fn supported_architectures() -> Vec<&'static str> {
    ARCHITECTURES
        .into_iter()
        .filter(|name| match ScmpArch::from_str(name) {
            Ok(ScmpArch::Native) => true,
            Ok(arch) => ScmpFilterContext::new(ScmpAction::Allow).is_ok_and(|mut ctx| {
                ctx.is_arch_present(arch).unwrap_or(false) || ctx.add_arch(arch).is_ok()
            }),
            Err(_) => false,
        })
        .collect()
}

#[cfg(feature = "compile")]
/// The kernel's limit on the length of a BPF program (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;

#[cfg(feature = "compile")]
/// The highest errno number (`MAX_ERRNO`): a larger value would not read as an error.
const MAX_ERRNO: u32 = 4095;

#[cfg(feature = "compile")]
impl Filter {
    /// Checks `profile` and compiles it.
    ///
    /// As runc does: an `errnoRet` left out means `EPERM`; a rule whose action is the default
    /// action is left out (libseccomp refuses it, and it changes nothing); the conditions of
    /// a rule must all hold, except when two of them test the same argument, when each is a
    /// rule of its own (either may hold). Unlike runc, a syscall name libseccomp does not
    /// know is an error rather than skipped: a rule that silently does nothing is a hole.
    pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, Error> {
        let default = action(
            "defaultAction",
            profile.default_action(),
            "defaultErrnoRet",
            profile.default_errno_ret(),
        )?;
        let mut flags = 0u32;
        for (k, flag) in profile.flags().iter().flatten().enumerate() {
            flags |= match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                    libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                }
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    return Err(bad(
                        format!("flags[{k}]"),
                        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV goes with SCMP_ACT_NOTIFY, \
                         which is not supported",
                    ))
                }
            } as u32;
        }

        let mut ctx = ScmpFilterContext::new(default)
            .map_err(|e| bad("", format!("libseccomp cannot make a filter: {e}")))?;
        for (k, arch) in profile.architectures().iter().flatten().enumerate() {
            let field = format!("architectures[{k}]");
            let name = arch.to_string();
            let arch = ScmpArch::from_str(&name)
                .map_err(|_| bad(&field, format!("unknown architecture {name}")))?;
            if arch == ScmpArch::Native || ctx.is_arch_present(arch).unwrap_or(false) {
                continue;
            }
            ctx.add_arch(arch).map_err(|e| {
                bad(
                    &field,
                    format!("the installed libseccomp cannot filter for {name}: {e}"),
                )
            })?;
        }

        for (i, call) in profile.syscalls().iter().flatten().enumerate() {
            let field = format!("syscalls[{i}]");
            let act = action(
                &format!("{field}.action"),
                call.action(),
                &format!("{field}.errnoRet"),
                call.errno_ret(),
            )?;
            let args = call.args().as_deref().unwrap_or_default();
            let conditions = args
                .iter()
                .enumerate()
                .map(|(k, arg)| condition(&format!("{field}.args[{k}]"), arg))
                .collect::<Result<Vec<_>, _>>()?;
            let mut seen = [false; 6];
            let repeated = args
                .iter()
                .any(|a| std::mem::replace(&mut seen[a.index()], true));
            let rules: Vec<Vec<ScmpArgCompare>> = if repeated {
                conditions.iter().map(|c| vec![*c]).collect()
            } else {
                vec![conditions]
            };
            if call.names().is_empty() {
                return Err(bad(format!("{field}.names"), "must not be empty"));
            }
            for (j, name) in call.names().iter().enumerate() {
                let field = format!("{field}.names[{j}]");
                let syscall = ScmpSyscall::from_name(name)
                    .map_err(|_| bad(&field, format!("unknown system call {name:?}")))?;
                if act == default {
                    continue;
                }
                for rule in &rules {
                    ctx.add_rule_conditional(act, syscall, rule).map_err(|e| {
                        bad(
                            &field,
                            format!("libseccomp refused the rule for {name}: {e}"),
                        )
                    })?;
                }
            }
        }

        let program =
            export(&ctx).map_err(|e| bad("", format!("cannot export the seccomp filter: {e}")))?;
        if program.len() > MAX_INSTRUCTIONS {
            return Err(bad(
                "",
                format!(
                    "the profile compiles to {} BPF instructions, more than the kernel's {MAX_INSTRUCTIONS}",
                    program.len()
                ),
            ));
        }
        Ok(Filter { program, flags })
    }
}

#[cfg(feature = "compile")]
/// libseccomp's action for an OCI action and its optional errno.
fn action(
    field: &str,
    action: LinuxSeccompAction,
    errno_field: &str,
    errno_ret: Option<u32>,
) -> Result<ScmpAction, Error> {
    use LinuxSeccompAction::*;
    let returns_errno = matches!(action, ScmpActErrno | ScmpActTrace);
    if errno_ret.is_some() && !returns_errno {
        return Err(bad(
            errno_field,
            format!("only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno, not {action}"),
        ));
    }
    let errno = errno_ret.unwrap_or(libc::EPERM as u32);
    if errno > MAX_ERRNO {
        return Err(bad(
            errno_field,
            format!("{errno} is not an errno (0 to {MAX_ERRNO})"),
        ));
    }
    Ok(match action {
        ScmpActKill | ScmpActKillThread => ScmpAction::KillThread,
        ScmpActKillProcess => ScmpAction::KillProcess,
        ScmpActTrap => ScmpAction::Trap,
        // Both fit: errno is at most MAX_ERRNO.
        ScmpActErrno => ScmpAction::Errno(errno as i32),
        ScmpActTrace => ScmpAction::Trace(errno as u16),
        ScmpActLog => ScmpAction::Log,
        ScmpActAllow => ScmpAction::Allow,
        ScmpActNotify => {
            return Err(bad(
                field,
                "SCMP_ACT_NOTIFY is not supported: peapod passes no listener to a seccomp agent",
            ))
        }
    })
}

#[cfg(feature = "compile")]
/// One argument comparison. For `SCMP_CMP_MASKED_EQ`, `value` is the mask and `valueTwo`
/// what the masked argument must equal (as runc and libseccomp read them).
fn condition(field: &str, arg: &LinuxSeccompArg) -> Result<ScmpArgCompare, Error> {
    use LinuxSeccompOperator::*;
    let index = u32::try_from(arg.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| {
            bad(
                format!("{field}.index"),
                format!(
                    "{} is not an argument (a system call has six: 0 to 5)",
                    arg.index()
                ),
            )
        })?;
    let value_two = arg.value_two().unwrap_or(0);
    let op = match arg.op() {
        ScmpCmpMaskedEq => {
            let op = ScmpCompareOp::MaskedEqual(arg.value());
            return Ok(ScmpArgCompare::new(index, op, value_two));
        }
        ScmpCmpNe => ScmpCompareOp::NotEqual,
        ScmpCmpLt => ScmpCompareOp::Less,
        ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        ScmpCmpEq => ScmpCompareOp::Equal,
        ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        ScmpCmpGt => ScmpCompareOp::Greater,
    };
    // Docker's and podman's profiles write `"valueTwo": 0` everywhere: harmless.
    if value_two != 0 {
        return Err(bad(
            format!("{field}.valueTwo"),
            format!("only SCMP_CMP_MASKED_EQ uses it, not {}", arg.op()),
        ));
    }
    Ok(ScmpArgCompare::new(index, op, arg.value()))
}

#[cfg(feature = "compile")]
/// The BPF program of `ctx`. libseccomp 2.5 exports only to a descriptor: a memfd holds it.
fn export(ctx: &ScmpFilterContext) -> std::io::Result<Vec<Instruction>> {
    // SAFETY: memfd_create reads a NUL-terminated name and returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(c"peapod-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file).map_err(std::io::Error::other)?;
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|b| Instruction {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect())
}

#[cfg(all(test, feature = "compile"))]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).expect("a profile")
    }

    fn compile(json: serde_json::Value) -> Result<Filter, Error> {
        Filter::compile(&profile(json))
    }

    /// Forks; the child sets no_new_privs, loads `filter` and runs `test`, whose result is
    /// its exit status. Returns how the child ended: `Ok(status)` or `Err(signal)`.
    fn in_child(filter: &Filter, test: impl FnOnce() -> i32) -> Result<i32, i32> {
        // SAFETY: the child only makes system calls (prctl, seccomp, the test's own, which
        // allocate nothing) and leaves with _exit, so the test harness's threads do not matter.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: prctl with integer arguments, _exit: no memory involved.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || filter.load().is_err()
                {
                    libc::_exit(100);
                }
                libc::_exit(test());
            }
        }
        let mut status = 0;
        // SAFETY: waitpid writes the status of our own child into a valid int.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid, "waitpid");
        if libc::WIFEXITED(status) {
            Ok(libc::WEXITSTATUS(status))
        } else {
            Err(libc::WTERMSIG(status))
        }
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn errno_rule_fails_only_the_listed_calls() {
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        }))
        .expect("compiles");
        assert!(filter.instructions() > 4, "{filter:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = CString::new(
            dir.path()
                .join("made")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .expect("path");
        let outcome = in_child(&filter, || {
            // SAFETY: mkdir reads a valid NUL-terminated path.
            let made = unsafe { libc::mkdir(path.as_ptr(), 0o755) };
            let mkdir_errno = errno();
            // SAFETY: getpid has no arguments.
            let pid_works = unsafe { libc::getpid() } > 0;
            i32::from(made == -1 && mkdir_errno == libc::EPERM && pid_works)
        });
        assert_eq!(outcome, Ok(1), "mkdir must fail with EPERM, getpid work");
    }

    #[test]
    fn errno_ret_and_argument_conditions_select_calls() {
        // personality(0xffffffff) only queries; fail just that one with ENOTSUP.
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": libc::ENOTSUP,
                          "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]}]
        }))
        .expect("compiles");
        let outcome = in_child(&filter, || {
            // SAFETY: personality with a plain integer argument.
            let query = unsafe { libc::personality(0xffff_ffff) };
            let query_errno = errno();
            // Setting the persona it already has (Linux, 0) is not matched.
            // SAFETY: as above.
            let set = unsafe { libc::personality(0) };
            i32::from(query == -1 && query_errno == libc::ENOTSUP && set >= 0)
        });
        assert_eq!(outcome, Ok(1));
    }

    #[test]
    fn two_conditions_on_one_argument_are_either_or() {
        // As runc: conditions on the same argument become separate rules.
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                                   {"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]}]
        }))
        .expect("compiles");
        let outcome = in_child(&filter, || {
            // SAFETY: personality with plain integer arguments.
            let (linux32, query, linux) = unsafe {
                (
                    libc::personality(8),
                    libc::personality(0xffff_ffff),
                    libc::personality(0),
                )
            };
            i32::from(linux32 == -1 && query == -1 && linux >= 0)
        });
        assert_eq!(outcome, Ok(1));
    }

    #[test]
    fn masked_eq_compares_the_masked_argument() {
        // Fail write(2) to any fd whose low bit is set (1, 3, 5...), as valueTwo says.
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EBADE,
                          "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]}]
        }))
        .expect("compiles");
        let outcome = in_child(&filter, || {
            let mut fds = [0; 2];
            // SAFETY: pipe writes two descriptors into a valid array; write reads one byte.
            unsafe {
                if libc::pipe(fds.as_mut_ptr()) != 0 {
                    return 2;
                }
                let (odd, even) = if fds[1] % 2 == 1 {
                    (fds[1], libc::dup2(fds[1], 10))
                } else {
                    (libc::dup2(fds[1], 11), fds[1])
                };
                let to_odd = libc::write(odd, b"x".as_ptr().cast(), 1);
                let odd_errno = errno();
                let to_even = libc::write(even, b"x".as_ptr().cast(), 1);
                i32::from(to_odd == -1 && odd_errno == libc::EBADE && to_even == 1)
            }
        });
        assert_eq!(outcome, Ok(1));
    }

    #[test]
    fn kill_process_action_kills_with_sigsys() {
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
        }))
        .expect("compiles");
        let outcome = in_child(&filter, || {
            // SAFETY: getppid has no arguments.
            unsafe { libc::getppid() };
            0
        });
        assert_eq!(outcome, Err(libc::SIGSYS));
    }

    #[test]
    fn unknown_syscall_is_named() {
        let err = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG"},
                         {"names": ["mkdir", "mkdri"], "action": "SCMP_ACT_ERRNO"}]
        }))
        .unwrap_err();
        assert_eq!(err.field, "syscalls[1].names[1]");
        assert_eq!(
            err.to_string(),
            "syscalls[1].names[1]: unknown system call \"mkdri\""
        );
    }

    #[test]
    fn notify_and_stray_errno_are_refused() {
        let err = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .unwrap_err();
        assert_eq!(err.field, "syscalls[0].action");
        assert!(err.problem.contains("not supported"), "{err}");
        let err = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1
        }))
        .unwrap_err();
        assert_eq!(err.field, "defaultErrnoRet");
        let err = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000
        }))
        .unwrap_err();
        assert!(err.problem.contains("not an errno"), "{err}");
    }

    #[test]
    fn bad_argument_index_is_named() {
        let err = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        }))
        .unwrap_err();
        assert_eq!(err.field, "syscalls[0].args[0].index");
    }

    #[test]
    fn unknown_action_or_operator_does_not_parse() {
        let action = serde_json::from_value::<LinuxSeccomp>(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_EXPLODE"}]
        }));
        assert!(action.is_err());
        let op = serde_json::from_value::<LinuxSeccomp>(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_ABOUT"}]}]
        }));
        assert!(op.is_err());
    }

    #[test]
    fn flags_architectures_and_default_rules() {
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
            // A rule with the default action is left out, as runc does.
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["acct"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        }))
        .expect("compiles");
        assert_eq!(filter.flags(), 0b11);
        assert!(supported_architectures().contains(&"SCMP_ARCH_X86_64"));
    }
}
