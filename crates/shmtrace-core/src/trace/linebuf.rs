//! A fixed-capacity line buffer that `core::fmt` can write into without allocating.

use core::fmt;
use core::mem::MaybeUninit;

/// Capacity of one log record, newline included. Longer records are cut and end in `...`.
pub const LINE_MAX: usize = 2048;

const ELLIPSIS: &[u8] = b"...";

/// One record being built on the stack. Writes never fail: what does not fit is dropped and the
/// line is marked truncated, because a hook must never fail or panic over its log line.
///
/// The buffer is left uninitialised: zeroing 2 KiB per record cost more than formatting it.
pub struct LineBuf {
    buf: [MaybeUninit<u8>; LINE_MAX],
    len: usize,
    truncated: bool,
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuf {
    pub const fn new() -> LineBuf {
        LineBuf {
            buf: [const { MaybeUninit::uninit() }; LINE_MAX],
            len: 0,
            truncated: false,
        }
    }

    /// Room kept back for the ellipsis and the final newline.
    const RESERVED: usize = ELLIPSIS.len() + 1;

    pub fn push_bytes(&mut self, bytes: &[u8]) {
        let room = LINE_MAX - Self::RESERVED - self.len;
        let n = bytes.len().min(room);
        self.put(&bytes[..n]);
        if n < bytes.len() {
            self.truncated = true;
        }
    }

    pub fn push_str(&mut self, s: &str) {
        self.push_bytes(s.as_bytes());
    }

    /// Ends the record with a newline (after `...` when it was cut) and returns its bytes.
    pub fn finish_line(&mut self) -> &[u8] {
        if self.truncated {
            self.put(ELLIPSIS);
            self.truncated = false;
        }
        self.put(b"\n");
        self.as_bytes()
    }

    /// Appends bytes the caller has made room for (`RESERVED` keeps room for the ending).
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end > LINE_MAX {
            return; // unreachable while callers respect `RESERVED`; never panic in a hook
        }
        // SAFETY: `end <= LINE_MAX`, so the destination lies within `buf`, which `bytes`
        // (a shared borrow) cannot overlap.
        unsafe {
            let dst = self.buf.as_mut_ptr().add(self.len).cast::<u8>();
            if bytes.len() <= 16 {
                copy_small(bytes, dst);
            } else {
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
            }
        }
        self.len = end;
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by `put`.
        unsafe { core::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn as_str(&self) -> &str {
        // Only `&str` and whole ASCII/UTF-8 sequences are pushed, but a cut can split a
        // multi-byte character; show the valid prefix rather than fail.
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.as_bytes()[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }
}

/// Copies `bytes` (at most 16) to `dst`. Most pieces of a record are a few bytes (a key, a
/// separator, a number): two loads and two stores of one width, overlapping in the middle,
/// cost less than a call to `memcpy` for each piece.
///
/// # Safety
/// `dst` is valid for `bytes.len()` bytes of writes and does not overlap `bytes`.
#[inline(always)]
unsafe fn copy_small(bytes: &[u8], dst: *mut u8) {
    let (n, src) = (bytes.len(), bytes.as_ptr());
    debug_assert!(n <= 16);
    // SAFETY: each read lies within `bytes` and each write within `dst`'s `n` bytes: the
    // first and last `w` of them, with `w <= n` in each arm.
    unsafe {
        if n >= 8 {
            let (a, b) = (
                src.cast::<u64>().read_unaligned(),
                src.add(n - 8).cast::<u64>().read_unaligned(),
            );
            dst.cast::<u64>().write_unaligned(a);
            dst.add(n - 8).cast::<u64>().write_unaligned(b);
        } else if n >= 4 {
            let (a, b) = (
                src.cast::<u32>().read_unaligned(),
                src.add(n - 4).cast::<u32>().read_unaligned(),
            );
            dst.cast::<u32>().write_unaligned(a);
            dst.add(n - 4).cast::<u32>().write_unaligned(b);
        } else if n > 0 {
            // 1 to 3 bytes: the first, the middle and the last cover them all.
            let (a, b, c) = (*src, *src.add(n / 2), *src.add(n - 1));
            *dst = a;
            *dst.add(n / 2) = b;
            *dst.add(n - 1) = c;
        }
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn pieces_of_every_length_are_copied_exactly() {
        let source: Vec<u8> = (0..64u8).map(|i| b'a' + i % 26).collect();
        let mut b = LineBuf::new();
        let mut want = Vec::new();
        for n in 0..=40 {
            b.push_bytes(&source[n % 7..n % 7 + n]);
            want.extend_from_slice(&source[n % 7..n % 7 + n]);
        }
        assert_eq!(b.as_bytes(), &want[..]);
    }

    #[test]
    fn formats_and_ends_with_newline() {
        let mut b = LineBuf::new();
        write!(b, "x={} y={:#x}", 5, 255).unwrap();
        assert_eq!(b.finish_line(), b"x=5 y=0xff\n");
    }

    #[test]
    fn overflow_is_cut_with_ellipsis_and_never_exceeds_capacity() {
        let mut b = LineBuf::new();
        for _ in 0..1000 {
            b.push_str("abcdefgh");
        }
        let line = b.finish_line();
        assert_eq!(line.len(), LINE_MAX);
        assert!(line.ends_with(b"...\n"));
    }
}
