//! Numbers written without `core::fmt`: its machinery (`fmt::write`, `pad_integral`, one
//! `write_str` per piece) cost more than the rest of a record. Each writer fills a small
//! stack buffer from the right and hands it to `out` in one `write_str`.

use core::fmt::{self, Write};

/// Room for any `u64` in decimal (20 digits) or hex with `0x` (18), and a sign.
const MAX: usize = 24;

/// `value` in decimal, as `{}` prints it.
pub fn dec(out: &mut impl Write, value: u64) -> fmt::Result {
    let mut buf = [0u8; MAX];
    let at = digits(&mut buf, MAX, value);
    emit(out, &buf[at..])
}

/// A signed `value` in decimal, as `{}` prints it.
pub fn signed(out: &mut impl Write, value: i64) -> fmt::Result {
    let mut buf = [0u8; MAX];
    let mut at = digits(&mut buf, MAX, value.unsigned_abs());
    if value < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    emit(out, &buf[at..])
}

/// `value` in lower-case hex with `0x`, as `{:#x}` prints it.
pub fn hex(out: &mut impl Write, value: u64) -> fmt::Result {
    let mut buf = [0u8; MAX];
    let mut at = MAX;
    let mut v = value;
    loop {
        at -= 1;
        buf[at] = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    at -= 2;
    buf[at] = b'0';
    buf[at + 1] = b'x';
    emit(out, &buf[at..])
}

/// `SECONDS.MICROS` from microseconds, as `{}.{:06}` prints it.
pub fn micros(out: &mut impl Write, micros: u64) -> fmt::Result {
    let mut buf = [0u8; MAX + 8];
    let end = buf.len();
    let mut fraction = micros % 1_000_000;
    for i in 1..=6 {
        buf[end - i] = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    buf[end - 7] = b'.';
    let at = digits(&mut buf, end - 7, micros / 1_000_000);
    emit(out, &buf[at..])
}

/// Writes `value`'s decimal digits to end just before `end`; where they start.
fn digits(buf: &mut [u8], end: usize, mut value: u64) -> usize {
    let mut at = end;
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return at;
        }
    }
}

fn emit(out: &mut impl Write, ascii: &[u8]) -> fmt::Result {
    // SAFETY: the writers above put only ASCII digits, hex letters, '.', '-' and 'x' there.
    out.write_str(unsafe { core::str::from_utf8_unchecked(ascii) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl Fn(&mut String) -> fmt::Result) -> String {
        let mut s = String::new();
        f(&mut s).unwrap();
        s
    }

    #[test]
    fn each_writer_prints_what_core_fmt_prints() {
        for v in [0u64, 1, 9, 10, 99, 4096, 1 << 32, u64::MAX - 1, u64::MAX] {
            assert_eq!(with(|s| dec(s, v)), format!("{v}"));
            assert_eq!(with(|s| hex(s, v)), format!("{v:#x}"));
            assert_eq!(
                with(|s| micros(s, v)),
                format!("{}.{:06}", v / 1_000_000, v % 1_000_000)
            );
        }
        for v in [0i64, 1, -1, 42, -4096, i64::MIN, i64::MAX] {
            assert_eq!(with(|s| signed(s, v)), format!("{v}"));
        }
    }
}
