//! A compiled filter, and loading it into the calling process.

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A seccomp filter ready to load: the BPF program and the `seccomp(2)` flags.
#[derive(Clone, PartialEq, Eq)]
pub struct Filter {
    pub(crate) program: Vec<Instruction>,
    pub(crate) flags: u32,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .finish()
    }
}

impl Filter {
    /// The number of BPF instructions.
    pub fn instructions(&self) -> usize {
        self.program.len()
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits the filter is loaded with.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Installs the filter on the calling thread (on all its threads with
    /// `SECCOMP_FILTER_FLAG_TSYNC`). The kernel requires `no_new_privs` to be set, or
    /// `CAP_SYS_ADMIN` in the thread's user namespace. It makes one system call and does not
    /// allocate, so it is safe between `fork` and `execve`; once it returns, every later
    /// system call of the process, `execve` included, goes through the filter.
    pub fn load(&self) -> std::io::Result<()> {
        // The length was checked against BPF_MAXINSNS when compiling.
        let len = u16::try_from(self.program.len()).unwrap_or(u16::MAX);
        let prog = libc::sock_fprog {
            len,
            // The kernel only reads the program; `Instruction` has sock_filter's layout.
            filter: self.program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads the sock_fprog and the `len`
        // instructions it points to, all valid for the duration of the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::c_ulong::from(self.flags),
                &prog as *const libc::sock_fprog,
            )
        };
        match ret {
            0 => Ok(()),
            // With TSYNC, a positive result is a thread that could not be synchronised.
            tid if tid > 0 => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
            _ => Err(std::io::Error::last_os_error()),
        }
    }
}
