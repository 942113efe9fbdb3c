//! The freestanding runtime of the size-optimised binary: entry point,
//! panic handler and the few memory routines the compiler may call.
//!
//! There is no C library underneath, so the kernel jumps straight to
//! `_start` with the stack holding `argc`, the `argv` array and the `envp`
//! array. The program never allocates, uses no thread-local storage and
//! makes no libc calls, so nothing else needs setting up.

use core::panic::PanicInfo;

use peapod_init::CStrArray;

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    // Mark the outermost frame for debuggers and align the stack as the ABI
    // requires for a call.
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, xzr",
    "mov x30, xzr",
    "mov x0, sp",
    "and x1, x0, #-16",
    "mov sp, x1",
    "bl {entry}",
    "brk #1",
    entry = sym entry,
);

/// Called from `_start` with the initial stack pointer.
///
/// # Safety
///
/// `sp` must be the process's initial stack pointer as set up by the
/// kernel's ELF loader.
unsafe extern "C" fn entry(sp: *const usize) -> ! {
    // SAFETY: the kernel places argc at the initial stack pointer, followed
    // by the NULL-terminated argv array and then the NULL-terminated envp
    // array; all of it lives until the process exits.
    let (argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1).cast::<*const u8>();
        (
            CStrArray::from_raw(argv),
            CStrArray::from_raw(argv.add(argc + 1)),
        )
    };
    peapod_init::exit(crate::real_main(argv, envp))
}

#[panic_handler]
fn panic(_info: &PanicInfo<'_>) -> ! {
    // Formatting the panic message would pull in `core::fmt`; a fixed line
    // is enough to know that something is badly wrong.
    peapod_init::diag::write_all(2, b"peapod-init: internal error\n");
    peapod_init::exit(1)
}

// Without a C library, the memory and string routines the compiler emits
// calls to must be defined here. They are simple byte loops: the strings
// and buffers involved are a few hundred bytes at most. The accesses are
// volatile so that the optimiser cannot recognise the loops as the very
// routines being defined and turn them into calls to themselves.

/// `memcpy`.
///
/// # Safety
///
/// `src` and `dst` must be valid for `n` bytes and must not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: the caller guarantees both ranges are valid for `n` bytes.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
    dst
}

/// `memmove`.
///
/// # Safety
///
/// `src` and `dst` must be valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) {
        for i in 0..n {
            // SAFETY: as for memcpy; copying forwards is correct when the
            // destination starts before the source.
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        }
    } else {
        for i in (0..n).rev() {
            // SAFETY: as for memcpy; copying backwards is correct when the
            // destination starts after the source.
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        }
    }
    dst
}

/// `memset`.
///
/// # Safety
///
/// `dst` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: the caller guarantees the range is valid for `n` bytes.
        unsafe { dst.add(i).write_volatile(c as u8) };
    }
    dst
}

/// `memcmp`.
///
/// # Safety
///
/// `a` and `b` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees both ranges are valid for `n` bytes.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// `bcmp`: like `memcmp`, but only equality matters.
///
/// # Safety
///
/// `a` and `b` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// `strlen`.
///
/// # Safety
///
/// `s` must point to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller guarantees the string is NUL-terminated, so every
    // byte up to the terminator is readable.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}
