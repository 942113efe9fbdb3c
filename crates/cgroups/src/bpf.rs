//! The eBPF instructions and the five `bpf(2)` commands a cgroup device program needs: load
//! it, attach it to a cgroup2 directory, list what is attached there, open an attached one by
//! its id, and detach it.
//!
//! Hand-written rather than a crate: `aya` and `libbpf` are made for programs compiled from C
//! into ELF objects, with maps, BTF and relocations, none of which a device filter has. It is
//! a dozen straight-line instructions of six kinds and five system calls, each with a small
//! fixed argument struct (`union bpf_attr` in `include/uapi/linux/bpf.h`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// A `bpf(2)` command that failed, or the cgroup directory that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct BpfError {
    /// What was being done (`bpf(BPF_PROG_LOAD)`).
    pub what: &'static str,
    /// The OS error.
    pub source: io::Error,
}

impl BpfError {
    /// Whether the kernel refused for lack of privilege (`EPERM`): an unprivileged user, a
    /// user namespace, or a runtime without `CAP_SYS_ADMIN`.
    pub fn is_permission(&self) -> bool {
        self.source.raw_os_error() == Some(libc::EPERM)
    }
}

// `bpf(2)` commands (`enum bpf_cmd`).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;

/// `BPF_PROG_TYPE_CGROUP_DEVICE`: a program the kernel runs on every `mknod` and every open of
/// a device node by a process of the cgroup (or of a cgroup below it).
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE`: where such a program is attached.
const BPF_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI`: several programs on one cgroup, and programs of cgroups below it run
/// too; a device must pass all of them. Without it a program below would replace the one
/// above, so a container could not be given a program inside a pod that has one, and a
/// program attached without the flag refuses any below it.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The name `bpftool prog` and `bpftool cgroup list` show (at most 15 bytes of letters,
/// digits, `_` and `.`).
pub(crate) const PROGRAM_NAME: &str = "peapod_devices";

/// The program's license, as the kernel reads `MODULE_LICENSE` strings. It only decides
/// whether a program may call GPL-only kernel helpers; a device filter calls no helper at
/// all, so any string works, and the program is peapod's own code under peapod's license.
const LICENSE: &[u8] = b"Apache-2.0 OR MIT\0";

/// One eBPF instruction as the kernel reads it (`struct bpf_insn`): an opcode, the
/// destination register in the low four bits and the source register in the high four of
/// one byte, a signed 16-bit offset (in instructions, for jumps, counted from the next one)
/// and a signed 32-bit immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// A register. R0 holds the return value; R1 holds, on entry, the address of the context
/// (`struct bpf_cgroup_dev_ctx`); R2 to R5 are free for the program's own use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reg(pub(crate) u8);

pub(crate) const R0: Reg = Reg(0);
pub(crate) const R1: Reg = Reg(1);
pub(crate) const R2: Reg = Reg(2);
pub(crate) const R3: Reg = Reg(3);
pub(crate) const R4: Reg = Reg(4);
pub(crate) const R5: Reg = Reg(5);

// Opcode parts (`include/uapi/linux/bpf_common.h` and `bpf.h`): instruction class, size,
// mode, operation and source (an immediate `K` or a register `X`).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;

impl Insn {
    const fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src.0 << 4) | dst.0,
            off,
            imm,
        }
    }

    /// `dst = *(u32 *)(src + off)`: the upper 32 bits of `dst` become zero.
    pub(crate) const fn load_u32(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
    }

    /// `dst = (u32)dst & imm`, in 32 bits (the upper half becomes zero).
    pub(crate) const fn and32(dst: Reg, imm: i32) -> Insn {
        Insn::new(BPF_ALU | BPF_AND | BPF_K, dst, R0, 0, imm)
    }

    /// `dst = (u32)dst >> imm`, a logical shift in 32 bits.
    pub(crate) const fn rsh32(dst: Reg, imm: i32) -> Insn {
        Insn::new(BPF_ALU | BPF_RSH | BPF_K, dst, R0, 0, imm)
    }

    /// `dst = (u32)src`.
    pub(crate) const fn mov32_reg(dst: Reg, src: Reg) -> Insn {
        Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
    }

    /// `dst = (u32)imm`.
    pub(crate) const fn mov32(dst: Reg, imm: i32) -> Insn {
        Insn::new(BPF_ALU | BPF_MOV | BPF_K, dst, R0, 0, imm)
    }

    /// `if dst != imm goto +off`: a 64-bit compare, `imm` sign-extended.
    pub(crate) const fn jne(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JNE | BPF_K, dst, R0, off, imm)
    }

    /// `if dst != src goto +off`: a 64-bit compare.
    pub(crate) const fn jne_reg(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JNE | BPF_X, dst, src, off, 0)
    }

    /// `return R0`.
    pub(crate) const fn exit() -> Insn {
        Insn::new(BPF_JMP | BPF_EXIT, R0, R0, 0, 0)
    }

    /// Whether this is a conditional jump (`BPF_JNE`, all this crate emits).
    pub(crate) fn is_jump(&self) -> bool {
        self.code & 0x07 == BPF_JMP && self.code & 0xf0 == BPF_JNE
    }

    /// The same instruction jumping by `off`.
    pub(crate) fn with_offset(self, off: i16) -> Insn {
        Insn { off, ..self }
    }

    #[cfg(test)]
    pub(crate) fn offset(&self) -> i16 {
        self.off
    }

    #[cfg(test)]
    pub(crate) fn is_exit(&self) -> bool {
        self.code == BPF_JMP | BPF_EXIT
    }
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `prog_name`. The kernel takes a shorter
/// struct than its own and reads the rest as zero.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for `BPF_PROG_ATTACH` and `BPF_PROG_DETACH`.
#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// `union bpf_attr` for `BPF_PROG_QUERY`, up to `prog_cnt` and the padding after it.
#[repr(C)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    padding: u32,
}

/// `union bpf_attr` for `BPF_PROG_GET_FD_BY_ID`.
#[repr(C)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `bpf(cmd, attr, sizeof *attr)`.
fn bpf<T>(cmd: libc::c_int, attr: &mut T, what: &'static str) -> Result<libc::c_long, BpfError> {
    // SAFETY: `attr` is a live, exclusively borrowed `repr(C)` struct of the layout the kernel
    // expects for `cmd`, and its size is passed with it; every pointer inside it (checked by
    // each caller) points to memory that outlives this call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(BpfError {
            what,
            source: io::Error::last_os_error(),
        });
    }
    Ok(ret)
}

/// A descriptor the kernel returned, owned from now on.
fn owned_fd(ret: libc::c_long) -> OwnedFd {
    // SAFETY: `ret` is a new descriptor `bpf(2)` just returned (it fits in an int: the kernel
    // hands out ints); nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) }
}

/// Loads `insns` as a cgroup device program. When the verifier refuses it, loads it again
/// with its log, whose last line says why.
pub(crate) fn load(insns: &[Insn]) -> Result<OwnedFd, BpfError> {
    let mut name = [0u8; 16];
    name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME.as_bytes());
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
    };
    match bpf(BPF_PROG_LOAD, &mut attr, "bpf(BPF_PROG_LOAD)") {
        Ok(fd) => Ok(owned_fd(fd)),
        Err(e) if matches!(e.source.raw_os_error(), Some(libc::EINVAL | libc::EACCES)) => {
            let mut log = vec![0u8; 16 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let again = bpf(BPF_PROG_LOAD, &mut attr, "bpf(BPF_PROG_LOAD)");
            let text = String::from_utf8_lossy(&log);
            let last = text
                .trim_end_matches('\0')
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned);
            match (again, last) {
                (Ok(fd), _) => Ok(owned_fd(fd)),
                (Err(_), Some(last)) => Err(BpfError {
                    what: "bpf(BPF_PROG_LOAD)",
                    source: io::Error::new(e.source.kind(), format!("{}: {last}", e.source)),
                }),
                (Err(_), None) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Opens a cgroup2 directory, the target of the commands below.
pub(crate) fn open_cgroup(dir: &Path) -> Result<OwnedFd, BpfError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(OwnedFd::from)
        .map_err(|source| BpfError {
            what: "cannot open the cgroup2 directory",
            source,
        })
}

/// Attaches `program` to `cgroup` among the others there ([`BPF_F_ALLOW_MULTI`]).
pub(crate) fn attach(cgroup: BorrowedFd, program: BorrowedFd) -> Result<(), BpfError> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr, "bpf(BPF_PROG_ATTACH)").map(drop)
}

/// Detaches `program` from `cgroup`.
pub(crate) fn detach(cgroup: BorrowedFd, program: BorrowedFd) -> Result<(), BpfError> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    bpf(BPF_PROG_DETACH, &mut attr, "bpf(BPF_PROG_DETACH)").map(drop)
}

/// The ids of the device programs attached to `cgroup` itself (not those of its parents).
pub(crate) fn attached(cgroup: BorrowedFd) -> Result<Vec<u32>, BpfError> {
    // The kernel allows 64 programs a cgroup; should there be more, it says how many, and
    // the query is made again with room for them.
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = QueryAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            query_flags: 0,
            attach_flags: 0,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            padding: 0,
        };
        match bpf(BPF_PROG_QUERY, &mut attr, "bpf(BPF_PROG_QUERY)") {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            Err(e)
                if e.source.raw_os_error() == Some(libc::ENOSPC)
                    && attr.prog_cnt as usize > ids.len() =>
            {
                ids.resize(attr.prog_cnt as usize, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A descriptor of the loaded program `id`, or `None` when it is gone.
pub(crate) fn program_by_id(id: u32) -> Result<Option<OwnedFd>, BpfError> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        next_id: 0,
        open_flags: 0,
    };
    match bpf(
        BPF_PROG_GET_FD_BY_ID,
        &mut attr,
        "bpf(BPF_PROG_GET_FD_BY_ID)",
    ) {
        Ok(fd) => Ok(Some(owned_fd(fd))),
        Err(e) if e.source.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes `program` (or none) the only device program of the cgroup2 directory `dir`: it is
/// attached first, then every program that was there before is detached, so that at no
/// moment is the cgroup less restricted than by either (a device must pass every attached
/// program).
pub(crate) fn replace(dir: &Path, program: Option<&[Insn]>) -> Result<(), BpfError> {
    let cgroup = open_cgroup(dir)?;
    // Loaded before anything is looked at or changed: a refusal leaves all as it was.
    let program = program.map(load).transpose()?;
    let old = attached(cgroup.as_fd())?;
    if let Some(program) = &program {
        attach(cgroup.as_fd(), program.as_fd())?;
    }
    for id in old {
        // Gone meanwhile (another command replaced it): nothing to detach.
        let Some(fd) = program_by_id(id)? else {
            continue;
        };
        match detach(cgroup.as_fd(), fd.as_fd()) {
            Err(e) if e.source.raw_os_error() == Some(libc::ENOENT) => {}
            other => other?,
        }
    }
    Ok(())
}
