//! NULL-terminated arrays of C strings, the shape `execve` wants for `argv`
//! and `envp`.
//!
//! The binary receives exactly this shape from the kernel and passes a tail
//! of its own `argv` to `execve` unchanged, so running a command needs no
//! allocation and no copying.

use core::ffi::CStr;
use core::marker::PhantomData;

/// A borrowed, NULL-terminated array of pointers to NUL-terminated strings.
#[derive(Clone, Copy, Debug)]
pub struct CStrArray<'a> {
    ptr: *const *const u8,
    len: usize,
    _strings: PhantomData<&'a CStr>,
}

impl<'a> CStrArray<'a> {
    /// Wraps a raw `argv`/`envp`-style array and counts its entries.
    ///
    /// # Safety
    ///
    /// `ptr` must point to an array of pointers terminated by a null
    /// pointer, each pointing to a NUL-terminated string, and the array and
    /// strings must stay valid and unchanged for `'a`.
    pub unsafe fn from_raw(ptr: *const *const u8) -> CStrArray<'a> {
        let mut len = 0;
        // SAFETY: the caller guarantees the array is null-terminated, so every
        // index up to and including the terminator is in bounds.
        while !unsafe { *ptr.add(len) }.is_null() {
            len += 1;
        }
        CStrArray {
            ptr,
            len,
            _strings: PhantomData,
        }
    }

    /// The number of strings.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when there are no strings.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The string at `index`.
    pub fn get(&self, index: usize) -> Option<&'a CStr> {
        if index >= self.len {
            return None;
        }
        // SAFETY: `index < len`, so the pointer is one of the non-null entries,
        // which point to NUL-terminated strings valid for 'a (from_raw's
        // contract).
        Some(unsafe { CStr::from_ptr((*self.ptr.add(index)).cast()) })
    }

    /// The array without its first `n` strings; still NULL-terminated.
    pub fn skip(&self, n: usize) -> CStrArray<'a> {
        let n = n.min(self.len);
        // SAFETY: `n <= len`, so the result stays within the array and ends at
        // the same terminator.
        let ptr = unsafe { self.ptr.add(n) };
        CStrArray {
            ptr,
            len: self.len - n,
            _strings: PhantomData,
        }
    }

    /// The raw NULL-terminated array, for `execve`.
    pub const fn as_ptr(&self) -> *const *const u8 {
        self.ptr
    }

    /// Iterates over the strings as byte slices (without the NUL).
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len)
            .filter_map(move |i| self.get(i))
            .map(CStr::to_bytes)
    }

    /// The value of environment variable `name` when this is an `envp`.
    pub fn var(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.iter().find_map(|entry| {
            entry
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(b"="))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_slices() {
        let strings: [&CStr; 3] = [c"sh", c"-c", c"PATH=/bin"];
        let ptrs = [
            strings[0].as_ptr().cast(),
            strings[1].as_ptr().cast(),
            strings[2].as_ptr().cast(),
            core::ptr::null(),
        ];
        // SAFETY: `ptrs` is null-terminated and points to static C strings.
        let a = unsafe { CStrArray::from_raw(ptrs.as_ptr()) };
        assert_eq!(a.len(), 3);
        assert_eq!(a.get(1), Some(c"-c"));
        assert_eq!(a.get(3), None);
        let tail = a.skip(2);
        assert_eq!(tail.len(), 1);
        assert_eq!(tail.get(0), Some(c"PATH=/bin"));
        assert_eq!(tail.var(b"PATH"), Some(&b"/bin"[..]));
        assert_eq!(tail.var(b"PAT"), None);
        assert!(a.skip(9).is_empty());
    }
}
