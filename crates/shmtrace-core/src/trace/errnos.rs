//! Names and messages of Linux errno values, for the `= -1 EINVAL (Invalid argument)` part of a
//! record. A static table because a hook cannot call `strerror` (it may allocate or take locks
//! and its text depends on the host's locale).
//!
//! Generated once from Python's `errno` module and `os.strerror` (glibc, C locale), with the
//! kernel's primary names where Python prefers an alias (`EDEADLK`, `EOPNOTSUPP`) and the name
//! Python lacks (`EHWPOISON`). The numbers come from `libc`, so the table stays right on
//! architectures whose errno numbering differs from the generic one.

/// `(errno, name, message)`.
const ERRNOS: &[(i32, &str, &str)] = &[
    (libc::EPERM, "EPERM", "Operation not permitted"),
    (libc::ENOENT, "ENOENT", "No such file or directory"),
    (libc::ESRCH, "ESRCH", "No such process"),
    (libc::EINTR, "EINTR", "Interrupted system call"),
    (libc::EIO, "EIO", "Input/output error"),
    (libc::ENXIO, "ENXIO", "No such device or address"),
    (libc::E2BIG, "E2BIG", "Argument list too long"),
    (libc::ENOEXEC, "ENOEXEC", "Exec format error"),
    (libc::EBADF, "EBADF", "Bad file descriptor"),
    (libc::ECHILD, "ECHILD", "No child processes"),
    (libc::EAGAIN, "EAGAIN", "Resource temporarily unavailable"),
    (libc::ENOMEM, "ENOMEM", "Cannot allocate memory"),
    (libc::EACCES, "EACCES", "Permission denied"),
    (libc::EFAULT, "EFAULT", "Bad address"),
    (libc::ENOTBLK, "ENOTBLK", "Block device required"),
    (libc::EBUSY, "EBUSY", "Device or resource busy"),
    (libc::EEXIST, "EEXIST", "File exists"),
    (libc::EXDEV, "EXDEV", "Invalid cross-device link"),
    (libc::ENODEV, "ENODEV", "No such device"),
    (libc::ENOTDIR, "ENOTDIR", "Not a directory"),
    (libc::EISDIR, "EISDIR", "Is a directory"),
    (libc::EINVAL, "EINVAL", "Invalid argument"),
    (libc::ENFILE, "ENFILE", "Too many open files in system"),
    (libc::EMFILE, "EMFILE", "Too many open files"),
    (libc::ENOTTY, "ENOTTY", "Inappropriate ioctl for device"),
    (libc::ETXTBSY, "ETXTBSY", "Text file busy"),
    (libc::EFBIG, "EFBIG", "File too large"),
    (libc::ENOSPC, "ENOSPC", "No space left on device"),
    (libc::ESPIPE, "ESPIPE", "Illegal seek"),
    (libc::EROFS, "EROFS", "Read-only file system"),
    (libc::EMLINK, "EMLINK", "Too many links"),
    (libc::EPIPE, "EPIPE", "Broken pipe"),
    (libc::EDOM, "EDOM", "Numerical argument out of domain"),
    (libc::ERANGE, "ERANGE", "Numerical result out of range"),
    (libc::EDEADLK, "EDEADLK", "Resource deadlock avoided"),
    (libc::ENAMETOOLONG, "ENAMETOOLONG", "File name too long"),
    (libc::ENOLCK, "ENOLCK", "No locks available"),
    (libc::ENOSYS, "ENOSYS", "Function not implemented"),
    (libc::ENOTEMPTY, "ENOTEMPTY", "Directory not empty"),
    (libc::ELOOP, "ELOOP", "Too many levels of symbolic links"),
    (libc::ENOMSG, "ENOMSG", "No message of desired type"),
    (libc::EIDRM, "EIDRM", "Identifier removed"),
    (libc::ECHRNG, "ECHRNG", "Channel number out of range"),
    (libc::EL2NSYNC, "EL2NSYNC", "Level 2 not synchronized"),
    (libc::EL3HLT, "EL3HLT", "Level 3 halted"),
    (libc::EL3RST, "EL3RST", "Level 3 reset"),
    (libc::ELNRNG, "ELNRNG", "Link number out of range"),
    (libc::EUNATCH, "EUNATCH", "Protocol driver not attached"),
    (libc::ENOCSI, "ENOCSI", "No CSI structure available"),
    (libc::EL2HLT, "EL2HLT", "Level 2 halted"),
    (libc::EBADE, "EBADE", "Invalid exchange"),
    (libc::EBADR, "EBADR", "Invalid request descriptor"),
    (libc::EXFULL, "EXFULL", "Exchange full"),
    (libc::ENOANO, "ENOANO", "No anode"),
    (libc::EBADRQC, "EBADRQC", "Invalid request code"),
    (libc::EBADSLT, "EBADSLT", "Invalid slot"),
    (libc::EBFONT, "EBFONT", "Bad font file format"),
    (libc::ENOSTR, "ENOSTR", "Device not a stream"),
    (libc::ENODATA, "ENODATA", "No data available"),
    (libc::ETIME, "ETIME", "Timer expired"),
    (libc::ENOSR, "ENOSR", "Out of streams resources"),
    (libc::ENONET, "ENONET", "Machine is not on the network"),
    (libc::ENOPKG, "ENOPKG", "Package not installed"),
    (libc::EREMOTE, "EREMOTE", "Object is remote"),
    (libc::ENOLINK, "ENOLINK", "Link has been severed"),
    (libc::EADV, "EADV", "Advertise error"),
    (libc::ESRMNT, "ESRMNT", "Srmount error"),
    (libc::ECOMM, "ECOMM", "Communication error on send"),
    (libc::EPROTO, "EPROTO", "Protocol error"),
    (libc::EMULTIHOP, "EMULTIHOP", "Multihop attempted"),
    (libc::EDOTDOT, "EDOTDOT", "RFS specific error"),
    (libc::EBADMSG, "EBADMSG", "Bad message"),
    (
        libc::EOVERFLOW,
        "EOVERFLOW",
        "Value too large for defined data type",
    ),
    (libc::ENOTUNIQ, "ENOTUNIQ", "Name not unique on network"),
    (libc::EBADFD, "EBADFD", "File descriptor in bad state"),
    (libc::EREMCHG, "EREMCHG", "Remote address changed"),
    (
        libc::ELIBACC,
        "ELIBACC",
        "Can not access a needed shared library",
    ),
    (
        libc::ELIBBAD,
        "ELIBBAD",
        "Accessing a corrupted shared library",
    ),
    (libc::ELIBSCN, "ELIBSCN", ".lib section in a.out corrupted"),
    (
        libc::ELIBMAX,
        "ELIBMAX",
        "Attempting to link in too many shared libraries",
    ),
    (
        libc::ELIBEXEC,
        "ELIBEXEC",
        "Cannot exec a shared library directly",
    ),
    (
        libc::EILSEQ,
        "EILSEQ",
        "Invalid or incomplete multibyte or wide character",
    ),
    (
        libc::ERESTART,
        "ERESTART",
        "Interrupted system call should be restarted",
    ),
    (libc::ESTRPIPE, "ESTRPIPE", "Streams pipe error"),
    (libc::EUSERS, "EUSERS", "Too many users"),
    (libc::ENOTSOCK, "ENOTSOCK", "Socket operation on non-socket"),
    (
        libc::EDESTADDRREQ,
        "EDESTADDRREQ",
        "Destination address required",
    ),
    (libc::EMSGSIZE, "EMSGSIZE", "Message too long"),
    (
        libc::EPROTOTYPE,
        "EPROTOTYPE",
        "Protocol wrong type for socket",
    ),
    (libc::ENOPROTOOPT, "ENOPROTOOPT", "Protocol not available"),
    (
        libc::EPROTONOSUPPORT,
        "EPROTONOSUPPORT",
        "Protocol not supported",
    ),
    (
        libc::ESOCKTNOSUPPORT,
        "ESOCKTNOSUPPORT",
        "Socket type not supported",
    ),
    (libc::EOPNOTSUPP, "EOPNOTSUPP", "Operation not supported"),
    (
        libc::EPFNOSUPPORT,
        "EPFNOSUPPORT",
        "Protocol family not supported",
    ),
    (
        libc::EAFNOSUPPORT,
        "EAFNOSUPPORT",
        "Address family not supported by protocol",
    ),
    (libc::EADDRINUSE, "EADDRINUSE", "Address already in use"),
    (
        libc::EADDRNOTAVAIL,
        "EADDRNOTAVAIL",
        "Cannot assign requested address",
    ),
    (libc::ENETDOWN, "ENETDOWN", "Network is down"),
    (libc::ENETUNREACH, "ENETUNREACH", "Network is unreachable"),
    (
        libc::ENETRESET,
        "ENETRESET",
        "Network dropped connection on reset",
    ),
    (
        libc::ECONNABORTED,
        "ECONNABORTED",
        "Software caused connection abort",
    ),
    (libc::ECONNRESET, "ECONNRESET", "Connection reset by peer"),
    (libc::ENOBUFS, "ENOBUFS", "No buffer space available"),
    (
        libc::EISCONN,
        "EISCONN",
        "Transport endpoint is already connected",
    ),
    (
        libc::ENOTCONN,
        "ENOTCONN",
        "Transport endpoint is not connected",
    ),
    (
        libc::ESHUTDOWN,
        "ESHUTDOWN",
        "Cannot send after transport endpoint shutdown",
    ),
    (
        libc::ETOOMANYREFS,
        "ETOOMANYREFS",
        "Too many references: cannot splice",
    ),
    (libc::ETIMEDOUT, "ETIMEDOUT", "Connection timed out"),
    (libc::ECONNREFUSED, "ECONNREFUSED", "Connection refused"),
    (libc::EHOSTDOWN, "EHOSTDOWN", "Host is down"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH", "No route to host"),
    (libc::EALREADY, "EALREADY", "Operation already in progress"),
    (
        libc::EINPROGRESS,
        "EINPROGRESS",
        "Operation now in progress",
    ),
    (libc::ESTALE, "ESTALE", "Stale file handle"),
    (libc::EUCLEAN, "EUCLEAN", "Structure needs cleaning"),
    (libc::ENOTNAM, "ENOTNAM", "Not a XENIX named type file"),
    (libc::ENAVAIL, "ENAVAIL", "No XENIX semaphores available"),
    (libc::EISNAM, "EISNAM", "Is a named type file"),
    (libc::EREMOTEIO, "EREMOTEIO", "Remote I/O error"),
    (libc::EDQUOT, "EDQUOT", "Disk quota exceeded"),
    (libc::ENOMEDIUM, "ENOMEDIUM", "No medium found"),
    (libc::EMEDIUMTYPE, "EMEDIUMTYPE", "Wrong medium type"),
    (libc::ECANCELED, "ECANCELED", "Operation canceled"),
    (libc::ENOKEY, "ENOKEY", "Required key not available"),
    (libc::EKEYEXPIRED, "EKEYEXPIRED", "Key has expired"),
    (libc::EKEYREVOKED, "EKEYREVOKED", "Key has been revoked"),
    (
        libc::EKEYREJECTED,
        "EKEYREJECTED",
        "Key was rejected by service",
    ),
    (libc::EOWNERDEAD, "EOWNERDEAD", "Owner died"),
    (
        libc::ENOTRECOVERABLE,
        "ENOTRECOVERABLE",
        "State not recoverable",
    ),
    (
        libc::ERFKILL,
        "ERFKILL",
        "Operation not possible due to RF-kill",
    ),
    (
        libc::EHWPOISON,
        "EHWPOISON",
        "Memory page has hardware error",
    ),
];

fn entry(errno: i32) -> Option<&'static (i32, &'static str, &'static str)> {
    ERRNOS.iter().find(|e| e.0 == errno)
}

/// The symbolic name of `errno` (`EINVAL`), or `None` when it is not a known Linux errno.
pub fn name(errno: i32) -> Option<&'static str> {
    entry(errno).map(|e| e.1)
}

/// The C-locale `strerror` text of `errno` (`Invalid argument`), or `None` when it is unknown.
pub fn message(errno: i32) -> Option<&'static str> {
    entry(errno).map(|e| e.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_errnos_have_name_and_message() {
        assert_eq!(name(libc::EINVAL), Some("EINVAL"));
        assert_eq!(message(libc::EINVAL), Some("Invalid argument"));
        assert_eq!(name(libc::ENOMEM), Some("ENOMEM"));
        assert_eq!(message(libc::EACCES), Some("Permission denied"));
        assert_eq!(name(libc::EAGAIN), Some("EAGAIN"));
        assert_eq!(name(libc::EDEADLK), Some("EDEADLK"));
        assert_eq!(name(libc::EOPNOTSUPP), Some("EOPNOTSUPP"));
        assert_eq!(name(libc::EHWPOISON), Some("EHWPOISON"));
    }

    #[test]
    fn unknown_errnos_are_none() {
        for errno in [0, -1, 41, 58, 134, 4095, i32::MIN, i32::MAX] {
            assert_eq!(name(errno), None, "{errno}");
            assert_eq!(message(errno), None, "{errno}");
        }
    }

    #[test]
    fn numbers_are_unique() {
        for (i, a) in ERRNOS.iter().enumerate() {
            assert!(ERRNOS.iter().skip(i + 1).all(|b| b.0 != a.0), "{}", a.1);
        }
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn generic_numbering_covers_1_to_133_except_the_unused_41_and_58() {
        let missing: Vec<i32> = (1..=133).filter(|&n| name(n).is_none()).collect();
        assert_eq!(missing, [41, 58]);
        assert_eq!(ERRNOS.len(), 131);
    }
}
