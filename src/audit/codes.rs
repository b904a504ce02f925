//! The findings shmtrace names: a stable code, a short name, a severity, and one sentence that
//! says what is wrong and how to fix it. Codes are never renumbered or reused (docs/findings.md).

use core::fmt::{self, Write};

use shmtrace_core::suppress::{CODES, code_index};
use shmtrace_core::trace::decode;
use shmtrace_core::trace::event::Func;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    WorldAccessible = 1,
    CreateWithoutExcl = 2,
    WriteExecMapping = 3,
    FixedReplacesLive = 4,
    ShmdtNotAttachment = 5,
    MunmapNeverMapped = 6,
    DoubleRelease = 7,
    UseAfterRemove = 8,
    ExitHoldingSemaphore = 9,
    SemopBlocked = 10,
    SizeNotPageMultiple = 11,
    ForeignCreator = 12,
    /// Raised by the `shmtrace` command, which sees every process of the tree: the shim
    /// alone never does.
    Deadlock = 13,
    SemNotClosed = 14,
    QueueRemovedWithMessages = 15,
    MsgBlocked = 16,
}

impl Code {
    pub const ALL: [Code; 16] = [
        Code::WorldAccessible,
        Code::CreateWithoutExcl,
        Code::WriteExecMapping,
        Code::FixedReplacesLive,
        Code::ShmdtNotAttachment,
        Code::MunmapNeverMapped,
        Code::DoubleRelease,
        Code::UseAfterRemove,
        Code::ExitHoldingSemaphore,
        Code::SemopBlocked,
        Code::SizeNotPageMultiple,
        Code::ForeignCreator,
        Code::Deadlock,
        Code::SemNotClosed,
        Code::QueueRemovedWithMessages,
        Code::MsgBlocked,
    ];

    /// `SHM001`..: what logs, reports and suppression files use.
    pub fn code(self) -> &'static str {
        self.entry().0
    }

    /// A readable alias of the code, accepted wherever the code is.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    fn entry(self) -> (&'static str, &'static str) {
        // The table lists codes in `ALL`'s order, by number (a test checks every one); a
        // number may be missing from a build's table, never reused.
        Code::ALL
            .iter()
            .position(|c| *c == self)
            .and_then(|i| CODES.get(i))
            .copied()
            .unwrap_or(("SHM000", "unknown"))
    }

    pub fn severity(self) -> Severity {
        match self {
            Code::WorldAccessible
            | Code::FixedReplacesLive
            | Code::ShmdtNotAttachment
            | Code::DoubleRelease
            | Code::UseAfterRemove
            | Code::Deadlock => Severity::Error,
            Code::CreateWithoutExcl
            | Code::WriteExecMapping
            | Code::MunmapNeverMapped
            | Code::ExitHoldingSemaphore
            | Code::SemopBlocked
            | Code::SemNotClosed
            | Code::QueueRemovedWithMessages
            | Code::MsgBlocked => Severity::Warning,
            Code::SizeNotPageMultiple | Code::ForeignCreator => Severity::Info,
        }
    }

    /// The code named `word` (`SHM002`, `shm002` or `create-without-excl`).
    pub fn parse(word: &str) -> Option<Code> {
        code_index(word).and_then(|i| Code::ALL.get(i).copied())
    }

    /// The bit of this code in a set of codes (`u32`).
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// Which kind of object or release a finding is about (`Finding::detail[0]` for the codes that
/// need it).
pub mod what {
    pub const SEGMENT: u64 = 0;
    pub const SEMAPHORE_SET: u64 = 1;
    /// `DoubleRelease` of an attachment (`shmdt`).
    pub const ATTACHMENT: u64 = 2;
    /// A POSIX shared memory object (`shm_open`), by the descriptor it returned.
    pub const SHM_NAME: u64 = 3;
    /// A named semaphore (`sem_open`), by the address it returned.
    pub const SEM_NAME: u64 = 4;
    /// A System V message queue (`msgget`), by its id.
    pub const MESSAGE_QUEUE: u64 = 5;
}

/// One finding: enough to write its message again later (the exit report repeats it), and
/// nothing that points into the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    pub code: Code,
    /// The call that showed it (for `ExitHoldingSemaphore`, the `semop` that decremented).
    pub func: Func,
    /// Return address into the calling code, as in call records.
    pub site: u64,
    /// Code-specific values, see [`Finding::write_message`].
    pub detail: [u64; 3],
}

struct Kind(u64);

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            what::SEGMENT => "segment shmid",
            what::SHM_NAME => "shared memory object fd",
            what::MESSAGE_QUEUE => "message queue msqid",
            _ => "semaphore set semid",
        })
    }
}

/// The object a finding is about: `segment shmid=5`, `named semaphore at 0x7f..`.
struct Object(u64, u64);

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            what::SEM_NAME => write!(f, "named semaphore at {:#x}", self.1),
            kind => write!(f, "{}={}", Kind(kind), self.1 as i32),
        }
    }
}

struct Key(i32);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        decode::key(f, self.0)
    }
}

impl Finding {
    pub fn new(code: Code, func: Func, site: u64, detail: [u64; 3]) -> Finding {
        Finding {
            code,
            func,
            site,
            detail,
        }
    }

    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    /// One sentence: what happened, why it matters, and the fix. ASCII without quotes or
    /// backslashes, so the JSON formats need no escaping.
    pub fn write_message(&self, out: &mut impl Write) -> fmt::Result {
        let [a, b, c] = self.detail;
        let id = a as i64;
        match self.code {
            Code::WorldAccessible => write!(
                out,
                "{} was created with mode 0{:03o}, so any local user can {} it; \
                 create it with mode 0600 (or 0660 to share it with a group)",
                Object(a, b),
                c & 0o777,
                // What the others bits allow, and nothing more.
                match (c & 0o004 != 0, c & 0o002 != 0) {
                    (true, true) => "read or corrupt",
                    (false, true) => "corrupt",
                    _ => "read",
                }
            ),
            Code::CreateWithoutExcl if self.func == Func::ShmOpen => write!(
                out,
                "shm_open used O_CREAT without O_EXCL on a fixed name, so it silently uses an \
                 object another process may have created first (fd={}); add O_EXCL and handle \
                 EEXIST, or use a name nobody can predict",
                c as i32
            ),
            Code::CreateWithoutExcl if self.func == Func::SemOpen => write!(
                out,
                "sem_open used O_CREAT without O_EXCL on a fixed name, so it silently opens a \
                 semaphore another process may have created first, with its value and not the \
                 one given (at {c:#x}); add O_EXCL and handle EEXIST, or use a name nobody can \
                 predict"
            ),
            Code::CreateWithoutExcl => write!(
                out,
                "{}({}, ...) used IPC_CREAT without IPC_EXCL on a fixed key, so it silently \
                 uses an object another process may have created first; add IPC_EXCL and handle \
                 EEXIST, or use IPC_PRIVATE",
                self.func.name(),
                Key(b as i32)
            ),
            Code::WriteExecMapping => write!(
                out,
                "the mapping at {a:#x} ({b} bytes) is both writable and executable, so a memory \
                 corruption bug becomes code execution; map it PROT_READ|PROT_WRITE and \
                 mprotect it to PROT_READ|PROT_EXEC once written"
            ),
            Code::FixedReplacesLive => write!(
                out,
                "{}({a:#x}, ...) with {} silently replaced the live {} at {b:#x} that this \
                 program made, discarding its contents; release the old one first, or let the \
                 kernel choose the address{}",
                self.func.name(),
                match self.func {
                    Func::Shmat => "SHM_REMAP",
                    Func::Mremap => "MREMAP_FIXED",
                    Func::Mmap | Func::Mmap64 => "MAP_FIXED",
                    // Only the three above replace address space.
                    Func::Shmget
                    | Func::Shmdt
                    | Func::Shmctl
                    | Func::Semget
                    | Func::Semop
                    | Func::Semtimedop
                    | Func::Semctl
                    | Func::Munmap
                    | Func::ShmOpen
                    | Func::ShmUnlink
                    | Func::MemfdCreate
                    | Func::SemOpen
                    | Func::SemClose
                    | Func::SemUnlink
                    | Func::Msgget
                    | Func::Msgsnd
                    | Func::Msgrcv
                    | Func::Msgctl => "a fixed address",
                },
                if c == 1 { "attachment" } else { "mapping" },
                if matches!(self.func, Func::Mmap | Func::Mmap64) {
                    " (MAP_FIXED_NOREPLACE fails instead of replacing)"
                } else {
                    ""
                }
            ),
            Code::ShmdtNotAttachment => {
                write!(out, "shmdt({a:#x}) failed: ")?;
                if b != 0 {
                    write!(
                        out,
                        "the address is inside the attachment at {b:#x}, not its start"
                    )?;
                } else {
                    out.write_str("no attachment starts at that address")?;
                }
                out.write_str("; pass exactly the address shmat returned")
            }
            Code::MunmapNeverMapped => write!(
                out,
                "munmap({a:#x}, {b}) covers memory this program never mapped (part of it is \
                 not mapped at all); unmap only what mmap returned, with the length mapped"
            ),
            Code::DoubleRelease => match a {
                what::ATTACHMENT => write!(
                    out,
                    "shmdt({b:#x}) of an attachment this process already detached; detach each \
                     attachment once and forget its address"
                ),
                _ => write!(
                    out,
                    "IPC_RMID of {}={}, which this process already removed; remove each object \
                     once",
                    Kind(a),
                    b as i32
                ),
            },
            Code::UseAfterRemove => write!(
                out,
                "{} on {}={} after this process removed it: the id may now name another \
                 object; stop using an id once it is removed",
                self.func.name(),
                Kind(a),
                b as i32
            ),
            Code::ExitHoldingSemaphore => write!(
                out,
                "the process exits holding semaphore {b} of set semid={id} (decremented by {c} \
                 without SEM_UNDO, value now 0), so processes waiting for it may wait forever; \
                 use SEM_UNDO or give it back before exit"
            ),
            Code::SemopBlocked => write!(
                out,
                "{} on semid={id} has been blocked for more than {b} ms and is still waiting: a \
                 possible deadlock; check the order in which processes take semaphores, or use \
                 semtimedop with a timeout",
                self.func.name()
            ),
            Code::Deadlock => write!(
                out,
                "semop on semid={id} waits for what another process holds while that process \
                 waits for what this one holds: neither can go on; take semaphores in one order \
                 everywhere, or use semtimedop and give back what you hold when it times out"
            ),
            Code::QueueRemovedWithMessages => write!(
                out,
                "IPC_RMID of message queue msqid={id} discarded {b} unread message{} ({c} \
                 bytes): whatever was still to be received is lost; drain the queue (msgrcv \
                 with IPC_NOWAIT until ENOMSG) or stop its senders before removing it",
                if b == 1 { "" } else { "s" }
            ),
            Code::MsgBlocked => write!(
                out,
                "{} on msqid={id} was blocked for {c} ms, more than {b} ms: a possible \
                 deadlock or a stalled peer; check that the other side sends or receives, or \
                 poll with IPC_NOWAIT",
                self.func.name()
            ),
            Code::SizeNotPageMultiple => write!(
                out,
                "segment shmid={id} was created with size {b}, not a multiple of the page size \
                 {c}: attachments are rounded up to whole pages; request a multiple of the page \
                 size"
            ),
            Code::SemNotClosed => write!(
                out,
                "the named semaphore at {a:#x} opened here is still open at exit ({b} sem_open \
                 not matched by a sem_close): its mapping stays for the life of the process, \
                 and a program that keeps opening semaphores this way grows without bound; \
                 call sem_close once for each sem_open when done with it"
            ),
            Code::ForeignCreator => write!(
                out,
                "{}={} was opened by key but created by uid {c}, not by this user; check that \
                 it is the object you expect (IPC_STAT) before trusting its contents",
                Kind(a),
                b as i32
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        for (i, c) in Code::ALL.iter().enumerate() {
            assert_eq!(c.code(), format!("SHM{:03}", *c as u8));
            assert_eq!(CODES[i].0, c.code());
            assert_eq!(Code::parse(c.code()), Some(*c));
            assert_eq!(Code::parse(&c.code().to_lowercase()), Some(*c));
            assert_eq!(Code::parse(c.name()), Some(*c));
        }
        assert_eq!(Code::ALL.len(), CODES.len());
        assert_eq!(Code::parse("SHM000"), None);
        assert_eq!(Code::parse("SHM099"), None);
    }

    #[test]
    fn messages_need_no_json_escaping() {
        for code in Code::ALL {
            for detail in [[0, 0, 0], [1, 5, 0o666], [2, 0x7f00_0000_0000, 1]] {
                for func in [Func::Shmget, Func::Mmap, Func::Shmat, Func::Mremap] {
                    let mut s = String::new();
                    Finding::new(code, func, 0x1234, detail)
                        .write_message(&mut s)
                        .unwrap();
                    assert!(
                        s.is_ascii() && !s.contains(['"', '\\', '\n']) && !s.is_empty(),
                        "{s}"
                    );
                }
            }
        }
    }

    #[test]
    fn world_access_says_what_others_may_do() {
        let message = |mode: u64| {
            let mut s = String::new();
            Finding::new(
                Code::WorldAccessible,
                Func::Shmget,
                1,
                [what::SEGMENT, 7, mode],
            )
            .write_message(&mut s)
            .unwrap();
            s
        };
        assert!(message(0o644).contains("any local user can read it;"));
        assert!(message(0o622).contains("any local user can corrupt it;"));
        assert!(message(0o777).contains("any local user can read or corrupt it;"));
    }

    #[test]
    fn a_message_names_the_object_and_the_fix() {
        let mut s = String::new();
        Finding::new(
            Code::WorldAccessible,
            Func::Shmget,
            1,
            [what::SEGMENT, 65538, 0o666],
        )
        .write_message(&mut s)
        .unwrap();
        assert_eq!(
            s,
            "segment shmid=65538 was created with mode 0666, so any local user can read or \
             corrupt it; create it with mode 0600 (or 0660 to share it with a group)"
        );
    }
}
