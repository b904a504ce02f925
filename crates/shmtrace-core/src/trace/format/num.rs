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
    // Two digits a step (an address has a dozen).
    while v >= 0x10 {
        at -= 2;
        let b = (v & 0xff) as usize;
        buf[at..at + 2].copy_from_slice(&HEX_PAIRS[2 * b..2 * b + 2]);
        v >>= 8;
    }
    if v > 0 || at == MAX {
        at -= 1;
        buf[at] = HEX_PAIRS[2 * v as usize + 1];
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
    let mut fraction = (micros % 1_000_000) as usize;
    for i in 0..3 {
        let pair = fraction % 100;
        buf[end - 2 * i - 2..end - 2 * i].copy_from_slice(&DEC_PAIRS[2 * pair..2 * pair + 2]);
        fraction /= 100;
    }
    buf[end - 7] = b'.';
    let at = digits(&mut buf, end - 7, micros / 1_000_000);
    emit(out, &buf[at..])
}

/// "00" to "99": two decimal digits a step, half the divisions (a record's time stamps and
/// numbers were a fifth of its formatting).
const DEC_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// "00" to "ff", for the same reason.
const HEX_PAIRS: [u8; 512] = {
    let digits = b"0123456789abcdef";
    let mut t = [0u8; 512];
    let mut i = 0;
    while i < 256 {
        t[2 * i] = digits[i >> 4];
        t[2 * i + 1] = digits[i & 0xf];
        i += 1;
    }
    t
};

/// Writes `value`'s decimal digits to end just before `end`; where they start.
fn digits(buf: &mut [u8], end: usize, mut value: u64) -> usize {
    let mut at = end;
    while value >= 100 {
        let pair = (value % 100) as usize;
        value /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DEC_PAIRS[2 * pair..2 * pair + 2]);
    }
    if value >= 10 {
        at -= 2;
        let pair = value as usize;
        buf[at..at + 2].copy_from_slice(&DEC_PAIRS[2 * pair..2 * pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + value as u8;
    }
    at
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
        for v in [
            0u64,
            1,
            9,
            10,
            15,
            16,
            99,
            100,
            255,
            256,
            999_999,
            1_000_000,
            4096,
            0x7fff_f7a1_2000,
            1_765_000_000_123_456,
            1 << 32,
            u64::MAX - 1,
            u64::MAX,
        ] {
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

    #[test]
    fn every_length_of_number_prints_as_core_fmt_prints_it() {
        // Each power of 2 and of 10 and its neighbours, then pseudo-random values of every size.
        let mut values: Vec<u64> = (0..64).flat_map(|i| [(1u64 << i) - 1, 1 << i]).collect();
        values.extend((0..20).flat_map(|i| [10u64.pow(i) - 1, 10u64.pow(i), 10u64.pow(i) + 1]));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            assert_eq!(with(|s| dec(s, v)), format!("{v}"));
            assert_eq!(with(|s| hex(s, v)), format!("{v:#x}"));
            let m = format!("{}.{:06}", v / 1_000_000, v % 1_000_000);
            assert_eq!(with(|s| micros(s, v)), m);
            assert_eq!(with(|s| signed(s, v as i64)), format!("{}", v as i64));
        }
    }
}
