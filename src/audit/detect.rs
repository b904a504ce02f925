//! Which findings a completed call shows, from the call itself, what the ledger said just
//! before it ([`Pre`]), what the kernel was asked ([`Asked`]) and what the audit remembers
//! ([`State`]). Pure: the hook layer gathers the inputs.

use super::codes::{Code, Finding, what};
use super::state::State;
use crate::ledger::OpenSemaphore;
use shmtrace_core::trace::event::{Event, Func, Phase, SemOp};

/// What the ledger said before a call that can replace or release address space (it is held
/// across those calls, so this is the state the kernel acted on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pre {
    /// `MAP_FIXED`, `MREMAP_FIXED` or `SHM_REMAP`: the start of a live region of the program
    /// in the target range (not a `PROT_NONE` reservation, not of unknown origin), and whether
    /// it belongs to an attachment.
    pub replaced: Option<(u64, bool)>,
    /// `munmap`: the ledger knows nothing in the range and the kernel had a hole in it.
    pub never_mapped: bool,
    /// `shmdt`: the start of the attachment containing the address, when it is not its start.
    pub inside_attachment: u64,
    /// `mremap`: the source region is writable and executable.
    pub source_wx: bool,
}

impl Pre {
    /// Whether [`before`](super::before) found anything (cheaper than a comparison with the
    /// default, field by field, which a hook pays on every call).
    #[inline(always)]
    pub fn found_anything(&self) -> bool {
        // Every field named: a new one does not compile until it is looked at here.
        let Pre {
            replaced,
            never_mapped,
            inside_attachment,
            source_wx,
        } = *self;
        replaced.is_some() || never_mapped || inside_attachment != 0 || source_wx
    }
}

/// What the kernel said after the call, when detection needed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    /// A get that opened an object by key: the uid that created it.
    pub creator_uid: Option<u32>,
    /// This process's effective uid.
    pub my_uid: u32,
    pub page_size: u64,
    /// `msgctl(IPC_RMID)`: the messages and bytes the queue held just before the call (`None`
    /// when the kernel would not say).
    pub queued: Option<(u64, u64)>,
}

/// At most this many findings come from one call.
const MAX_PER_CALL: usize = 4;

/// The findings of one call, without allocating.
#[derive(Clone, Copy, Debug, Default)]
pub struct Out {
    items: [Option<Finding>; MAX_PER_CALL],
}

impl Out {
    fn push(&mut self, f: Finding) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(f);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Finding> + '_ {
        self.items.iter().flatten().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }
}

const IPC_64: i32 = 0x100;

/// Commands whose first argument is not an id (an index, or nothing).
fn takes_no_id(cmd: i32) -> bool {
    matches!(
        cmd,
        libc::IPC_INFO
            | SHM_STAT
            | SHM_INFO
            | SHM_STAT_ANY
            | libc::SEM_INFO
            | libc::SEM_STAT
            | SEM_STAT_ANY
    )
}

/// msgctl's commands whose first argument is not an id (linux/msg.h).
fn msgctl_takes_no_id(cmd: i32) -> bool {
    matches!(cmd, libc::IPC_INFO | MSG_STAT | MSG_INFO | MSG_STAT_ANY)
}

// linux/shm.h, linux/sem.h and linux/msg.h (not all in the libc crate).
const MSG_STAT: i32 = 11;
const MSG_INFO: i32 = 12;
const MSG_STAT_ANY: i32 = 13;
const SHM_STAT: i32 = 13;
const SHM_INFO: i32 = 14;
const SHM_STAT_ANY: i32 = 15;
const SEM_STAT_ANY: i32 = 20;

/// Whether a get opened an existing object by key (where the creator may be someone else).
pub fn opened_by_key(ev: &Event) -> bool {
    ev.created() == Some(false) && ev.arg_int(0) != libc::IPC_PRIVATE
}

pub fn after_call(state: &mut State, ev: &Event, pre: &Pre, asked: &Asked) -> Out {
    let mut out = Out::default();
    find(state, ev, pre, asked, &mut out);
    out
}

/// [`after_call`] into the caller's `out` (a few hundred bytes not copied on the way back).
pub fn find(state: &mut State, ev: &Event, pre: &Pre, asked: &Asked, out: &mut Out) {
    if ev.phase != Phase::Exit {
        return;
    }
    let f = |code, detail| Finding::new(code, ev.func, ev.caller, detail);
    let ok = !ev.failed();
    let ret = ev.ret as u64;
    match ev.func {
        Func::Shmget | Func::Semget | Func::Msgget if ok => {
            let kind = get_kind(ev.func);
            let id = ev.ret as i32;
            // msgget has no size argument: its flags are the second.
            let flags_at = if ev.func == Func::Msgget { 1 } else { 2 };
            let (key, flags) = (ev.arg_int(0), ev.arg_int(flags_at));
            state.id_reused(kind, id);
            if ev.created && flags & 0o006 != 0 {
                out.push(f(
                    Code::WorldAccessible,
                    [kind, ret, (flags & 0o777) as u64],
                ));
            }
            let excl = libc::IPC_CREAT | libc::IPC_EXCL;
            if key != libc::IPC_PRIVATE && flags & excl == libc::IPC_CREAT {
                out.push(f(Code::CreateWithoutExcl, [kind, key as u32 as u64, ret]));
            }
            let size = ev.args[1];
            let page = asked.page_size;
            if ev.func == Func::Shmget
                && ev.created
                && flags & libc::SHM_HUGETLB == 0
                && page.is_power_of_two()
                && !size.is_multiple_of(page)
            {
                out.push(f(Code::SizeNotPageMultiple, [ret, size, page]));
            }
            if opened_by_key(ev)
                && let Some(uid) = asked.creator_uid.filter(|&u| u != asked.my_uid)
            {
                out.push(f(Code::ForeignCreator, [kind, ret, u64::from(uid)]));
            }
        }
        Func::Shmat => {
            let shmid = ev.arg_int(0);
            if state.was_removed(what::SEGMENT, shmid) {
                out.push(f(Code::UseAfterRemove, [what::SEGMENT, shmid as u64, 0]));
            }
            if ok {
                state.attached(ret);
                if let Some((start, shm)) = pre.replaced {
                    out.push(f(
                        Code::FixedReplacesLive,
                        [ev.args[1], start, u64::from(shm)],
                    ));
                }
            }
        }
        Func::Shmdt => {
            let addr = ev.args[0];
            if ok {
                state.detached(addr);
            } else if ev.errno == libc::EINVAL {
                if state.was_detached(addr) {
                    out.push(f(Code::DoubleRelease, [what::ATTACHMENT, addr, 0]));
                } else {
                    out.push(f(
                        Code::ShmdtNotAttachment,
                        [addr, pre.inside_attachment, 0],
                    ));
                }
            }
        }
        Func::Shmctl => {
            let (id, cmd) = (ev.arg_int(0), ev.arg_int(1) & !IPC_64);
            object_command(state, out, ev, what::SEGMENT, id, cmd, ok);
        }
        Func::Semctl => {
            let (id, cmd) = (ev.arg_int(0), ev.arg_int(2) & !IPC_64);
            object_command(state, out, ev, what::SEMAPHORE_SET, id, cmd, ok);
            if ok {
                match cmd {
                    libc::SETVAL => state.reset(id, u16::try_from(ev.arg_int(1)).ok()),
                    libc::SETALL | libc::IPC_RMID => state.reset(id, None),
                    _ => {}
                }
            }
        }
        Func::Semop | Func::Semtimedop => {
            let semid = ev.arg_int(0);
            if state.was_removed(what::SEMAPHORE_SET, semid) {
                out.push(f(
                    Code::UseAfterRemove,
                    [what::SEMAPHORE_SET, semid as u64, 0],
                ));
            }
            if ok {
                holdings(state, ev);
            }
        }
        Func::Mmap | Func::Mmap64 if ok => {
            let both = libc::PROT_WRITE | libc::PROT_EXEC;
            if ev.arg_int(2) & both == both {
                out.push(f(Code::WriteExecMapping, [ret, ev.args[1], 0]));
            }
            if let Some((start, shm)) = pre.replaced {
                out.push(f(
                    Code::FixedReplacesLive,
                    [ev.args[0], start, u64::from(shm)],
                ));
            }
        }
        Func::Munmap if ok && pre.never_mapped => {
            out.push(f(Code::MunmapNeverMapped, [ev.args[0], ev.args[1], 0]));
        }
        Func::Mremap if ok => {
            if pre.source_wx {
                out.push(f(Code::WriteExecMapping, [ret, ev.args[2], 0]));
            }
            if let Some((start, shm)) = pre.replaced {
                out.push(f(
                    Code::FixedReplacesLive,
                    [ev.args[4], start, u64::from(shm)],
                ));
            }
        }
        Func::Msgctl => {
            let (id, cmd) = (ev.arg_int(0), ev.arg_int(1) & !IPC_64);
            if !msgctl_takes_no_id(cmd) {
                object_command(state, out, ev, what::MESSAGE_QUEUE, id, cmd, ok);
            }
            if ok
                && cmd == libc::IPC_RMID
                && let Some((messages, bytes)) = asked.queued.filter(|q| q.0 > 0)
            {
                out.push(f(
                    Code::QueueRemovedWithMessages,
                    [id as u64, messages, bytes],
                ));
            }
        }
        Func::Msgsnd | Func::Msgrcv => {
            let msqid = ev.arg_int(0);
            if state.was_removed(what::MESSAGE_QUEUE, msqid) {
                out.push(f(
                    Code::UseAfterRemove,
                    [what::MESSAGE_QUEUE, msqid as u64, 0],
                ));
            }
        }
        // Failed gets and mappings, and munmaps of known memory: nothing to find.
        Func::Shmget
        | Func::Semget
        | Func::Msgget
        | Func::Mmap
        | Func::Mmap64
        | Func::Munmap
        | Func::Mremap => {}
        Func::ShmOpen if ok => name_opened(out, ev, what::SHM_NAME),
        Func::SemOpen if ok => name_opened(out, ev, what::SEM_NAME),
        Func::ShmOpen
        | Func::ShmUnlink
        | Func::MemfdCreate
        | Func::SemOpen
        | Func::SemClose
        | Func::SemUnlink => {}
    }
}

/// Whether a successful operation changes what this process holds (`SEM_UNDO` ones the kernel
/// undoes at exit itself).
pub fn changes_holdings(op: &SemOp) -> bool {
    op.op != 0 && op.flg & libc::SEM_UNDO as i16 == 0
}

/// A successful `semop`: what it took or gave back without `SEM_UNDO`.
pub fn holdings(state: &mut State, ev: &Event) {
    let semid = ev.arg_int(0);
    for op in ev.sops().iter().filter(|op| changes_holdings(op)) {
        state.adjusted(semid, op.num, op.op, ev.caller);
    }
}

/// A successful `shm_open` or `sem_open` (`kind`, named by its result): the mode it created
/// the name with, and `O_CREAT` without `O_EXCL`.
fn name_opened(out: &mut Out, ev: &Event, kind: u64) {
    let f = |code, detail| Finding::new(code, ev.func, ev.caller, detail);
    let (oflag, mode, ret) = (ev.arg_int(1), ev.args[2], ev.ret as u64);
    if ev.created && mode & 0o006 != 0 {
        out.push(f(Code::WorldAccessible, [kind, ret, mode & 0o777]));
    }
    if oflag & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT {
        out.push(f(Code::CreateWithoutExcl, [kind, 0, ret]));
    }
}

/// At exit: each named semaphore still open, at its first `sem_open`.
pub fn not_closed(open: &[OpenSemaphore]) -> impl Iterator<Item = Finding> + '_ {
    open.iter().map(|o| {
        Finding::new(
            Code::SemNotClosed,
            Func::SemOpen,
            o.site,
            [o.addr, o.opens, 0],
        )
    })
}

/// What kind of object a get returns.
pub fn get_kind(func: Func) -> u64 {
    match func {
        Func::Shmget => what::SEGMENT,
        Func::Msgget => what::MESSAGE_QUEUE,
        _ => what::SEMAPHORE_SET,
    }
}

/// `shmctl`/`semctl`/`msgctl`: a second `IPC_RMID`, or any other use of a removed id.
fn object_command(
    state: &mut State,
    out: &mut Out,
    ev: &Event,
    kind: u64,
    id: i32,
    cmd: i32,
    ok: bool,
) {
    let f = |code, detail| Finding::new(code, ev.func, ev.caller, detail);
    if takes_no_id(cmd) {
        return;
    }
    let removed_before = state.was_removed(kind, id);
    if cmd == libc::IPC_RMID {
        if removed_before {
            out.push(f(Code::DoubleRelease, [kind, id as u64, 0]));
        } else if ok {
            state.removed(kind, id);
        }
    } else if removed_before {
        out.push(f(Code::UseAfterRemove, [kind, id as u64, 0]));
    }
}

/// At exit: semaphores taken without `SEM_UNDO` and never given back, which the kernel says
/// are at 0 now (anyone decrementing them waits). `value` asks the kernel (`GETVAL`).
pub fn at_exit<'a>(
    state: &'a State,
    value: impl Fn(i32, u16) -> Option<i32> + 'a,
) -> impl Iterator<Item = Finding> + 'a {
    state
        .held()
        .filter(move |h| {
            !state.was_removed(what::SEMAPHORE_SET, h.semid) && value(h.semid, h.num) == Some(0)
        })
        .map(|h| {
            Finding::new(
                Code::ExitHoldingSemaphore,
                Func::Semop,
                h.site,
                [h.semid as u64, u64::from(h.num), h.net.unsigned_abs()],
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmtrace_core::trace::event::SemOp;

    fn call(func: Func, args: &[u64], ret: i64) -> Event {
        let mut ev = Event::new(Phase::Exit, func);
        ev.args[..args.len()].copy_from_slice(args);
        ev.ret = ret;
        ev.caller = 0x55d0_0000_1234;
        ev
    }

    fn failed(func: Func, args: &[u64], errno: i32) -> Event {
        let mut ev = call(func, args, func.failure_value());
        ev.errno = errno;
        ev
    }

    fn codes(state: &mut State, ev: &Event, pre: &Pre) -> Vec<Code> {
        let asked = Asked {
            creator_uid: None,
            my_uid: 1000,
            page_size: 4096,
            queued: None,
        };
        after_call(state, ev, pre, &asked)
            .iter()
            .map(|f| f.code)
            .collect()
    }

    fn int(v: i32) -> u64 {
        i64::from(v) as u64
    }

    #[test]
    fn creation_mode_and_excl() {
        let mut s = State::new();
        let mut ev = call(
            Func::Shmget,
            &[0x4d2, 4096, int(libc::IPC_CREAT | 0o666)],
            7,
        );
        ev.created = true;
        assert_eq!(
            codes(&mut s, &ev, &Pre::default()),
            [Code::WorldAccessible, Code::CreateWithoutExcl]
        );
        let mut fixed = call(
            Func::Shmget,
            &[0x4d2, 4096, int(libc::IPC_CREAT | libc::IPC_EXCL | 0o600)],
            7,
        );
        fixed.created = true;
        assert!(codes(&mut s, &fixed, &Pre::default()).is_empty());
        // Opening someone else's 0666 object is not creating it.
        let mut opened = call(Func::Semget, &[0x4d2, 1, int(0o666)], 9);
        opened.created = false;
        assert!(codes(&mut s, &opened, &Pre::default()).is_empty());
        // IPC_PRIVATE cannot be squatted.
        let mut private = call(Func::Semget, &[0, 1, int(libc::IPC_CREAT | 0o600)], 9);
        private.created = true;
        assert!(codes(&mut s, &private, &Pre::default()).is_empty());
    }

    #[test]
    fn shm_open_creation_mode_and_excl() {
        let mut s = State::new();
        let creat = int(libc::O_RDWR | libc::O_CREAT);
        let excl = int(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL);
        let mut ev = call(Func::ShmOpen, &[0x1000, creat, 0o666], 3);
        ev.created = true;
        assert_eq!(
            codes(&mut s, &ev, &Pre::default()),
            [Code::WorldAccessible, Code::CreateWithoutExcl]
        );
        let mut fixed = call(Func::ShmOpen, &[0x1000, excl, 0o600], 3);
        fixed.created = true;
        assert!(codes(&mut s, &fixed, &Pre::default()).is_empty());
        // Opening an existing 0666 name is not creating it; without O_CREAT nothing is squatted.
        let opened = call(Func::ShmOpen, &[0x1000, int(libc::O_RDWR), 0o666], 3);
        assert!(codes(&mut s, &opened, &Pre::default()).is_empty());
        let refused = failed(Func::ShmOpen, &[0x1000, creat, 0o666], libc::EACCES);
        assert!(codes(&mut s, &refused, &Pre::default()).is_empty());
    }

    #[test]
    fn sem_open_creation_mode_and_excl() {
        let mut s = State::new();
        let sem = 0x7f3a_2c7f_e000;
        let mut ev = call(Func::SemOpen, &[0x1000, int(libc::O_CREAT), 0o666, 1], sem);
        ev.created = true;
        assert_eq!(
            codes(&mut s, &ev, &Pre::default()),
            [Code::WorldAccessible, Code::CreateWithoutExcl]
        );
        let excl = int(libc::O_CREAT | libc::O_EXCL);
        let mut fixed = call(Func::SemOpen, &[0x1000, excl, 0o600, 1], sem);
        fixed.created = true;
        assert!(codes(&mut s, &fixed, &Pre::default()).is_empty());
        // Opening an existing name: no mode chosen, nothing squatted.
        let opened = call(Func::SemOpen, &[0x1000, 0, 0o666, 1], sem);
        assert!(codes(&mut s, &opened, &Pre::default()).is_empty());
        // SEM_FAILED is NULL: a failed sem_open finds nothing.
        let refused = failed(
            Func::SemOpen,
            &[0x1000, int(libc::O_CREAT), 0o666, 1],
            libc::EACCES,
        );
        assert_eq!(refused.ret, 0);
        assert!(codes(&mut s, &refused, &Pre::default()).is_empty());
        let mut message = String::new();
        let world = Finding::new(
            Code::WorldAccessible,
            Func::SemOpen,
            1,
            [what::SEM_NAME, sem as u64, 0o666],
        );
        world.write_message(&mut message).unwrap();
        assert!(
            message.starts_with("named semaphore at 0x7f3a2c7fe000 was created with mode 0666"),
            "{message}"
        );
    }

    #[test]
    fn every_semaphore_still_open_at_exit_is_one_finding_at_its_sem_open() {
        let open = [
            OpenSemaphore {
                addr: 0x7f00_0000,
                opens: 2,
                site: 0x100,
            },
            OpenSemaphore {
                addr: 0x7f00_1000,
                opens: 1,
                site: 0x200,
            },
        ];
        let found: Vec<Finding> = not_closed(&open).collect();
        assert_eq!(
            found,
            [
                Finding::new(
                    Code::SemNotClosed,
                    Func::SemOpen,
                    0x100,
                    [0x7f00_0000, 2, 0]
                ),
                Finding::new(
                    Code::SemNotClosed,
                    Func::SemOpen,
                    0x200,
                    [0x7f00_1000, 1, 0]
                ),
            ]
        );
        assert_eq!(Code::SemNotClosed.code(), "SHM014");
        assert_eq!(
            Code::SemNotClosed.severity(),
            crate::audit::Severity::Warning
        );
        let mut message = String::new();
        found[0].write_message(&mut message).unwrap();
        assert!(
            message.contains("(2 sem_open not matched by a sem_close)"),
            "{message}"
        );
        assert!(not_closed(&[]).next().is_none());
    }

    #[test]
    fn msgget_mode_and_excl_like_the_other_gets() {
        let mut s = State::new();
        let mut ev = call(Func::Msgget, &[0x4d2, int(libc::IPC_CREAT | 0o666)], 5);
        ev.created = true;
        let got: Vec<_> = after_call(&mut s, &ev, &Pre::default(), &Asked::default())
            .iter()
            .map(|f| (f.code, f.detail))
            .collect();
        assert_eq!(
            got,
            [
                (Code::WorldAccessible, [what::MESSAGE_QUEUE, 5, 0o666]),
                (Code::CreateWithoutExcl, [what::MESSAGE_QUEUE, 0x4d2, 5]),
            ]
        );
        let excl = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
        let mut fixed = call(Func::Msgget, &[0x4d2, int(excl)], 5);
        fixed.created = true;
        assert!(codes(&mut s, &fixed, &Pre::default()).is_empty());
        let mut private = call(Func::Msgget, &[0, int(libc::IPC_CREAT | 0o600)], 6);
        private.created = true;
        assert!(codes(&mut s, &private, &Pre::default()).is_empty());
        let refused = failed(
            Func::Msgget,
            &[0x4d2, int(libc::IPC_CREAT | 0o666)],
            libc::ENOSPC,
        );
        assert!(codes(&mut s, &refused, &Pre::default()).is_empty());
    }

    #[test]
    fn removing_a_queue_that_holds_messages() {
        let mut s = State::new();
        let rmid = call(Func::Msgctl, &[5, int(libc::IPC_RMID), 0], 0);
        let held = |queued| Asked {
            queued,
            ..Asked::default()
        };
        let got: Vec<_> = after_call(&mut s, &rmid, &Pre::default(), &held(Some((3, 48))))
            .iter()
            .map(|f| (f.code, f.detail))
            .collect();
        assert_eq!(got, [(Code::QueueRemovedWithMessages, [5, 3, 48])]);
        // Empty, unknown, or refused: nothing is lost.
        let mut s = State::new();
        assert!(after_call(&mut s, &rmid, &Pre::default(), &held(Some((0, 0)))).is_empty());
        let mut s = State::new();
        assert!(after_call(&mut s, &rmid, &Pre::default(), &held(None)).is_empty());
        let refused = failed(Func::Msgctl, &[5, int(libc::IPC_RMID), 0], libc::EPERM);
        let mut s = State::new();
        assert!(after_call(&mut s, &refused, &Pre::default(), &held(Some((3, 48)))).is_empty());
    }

    #[test]
    fn a_removed_queue_used_again() {
        let mut s = State::new();
        let rmid = call(Func::Msgctl, &[5, int(libc::IPC_RMID), 0], 0);
        assert!(codes(&mut s, &rmid, &Pre::default()).is_empty());
        let send = failed(Func::Msgsnd, &[5, 0x10, 4, 0], libc::EINVAL);
        assert_eq!(
            codes(&mut s, &send, &Pre::default()),
            [Code::UseAfterRemove]
        );
        let again = failed(Func::Msgctl, &[5, int(libc::IPC_RMID), 0], libc::EINVAL);
        assert_eq!(
            codes(&mut s, &again, &Pre::default()),
            [Code::DoubleRelease]
        );
        // MSG_STAT and MSG_INFO take an index, not an id.
        let stat = call(Func::Msgctl, &[5, 11, 0x10], 7);
        assert!(codes(&mut s, &stat, &Pre::default()).is_empty());
        // A get that returns the id makes it live again.
        let got = call(Func::Msgget, &[0, int(libc::IPC_CREAT | 0o600)], 5);
        assert!(codes(&mut s, &got, &Pre::default()).is_empty());
        let receive = call(Func::Msgrcv, &[5, 0x10, 4, 0, 0], 4);
        assert!(codes(&mut s, &receive, &Pre::default()).is_empty());
    }

    #[test]
    fn size_and_foreign_creator_are_info() {
        let mut s = State::new();
        let mut ev = call(Func::Shmget, &[0, 100, int(libc::IPC_CREAT | 0o600)], 7);
        ev.created = true;
        assert_eq!(
            codes(&mut s, &ev, &Pre::default()),
            [Code::SizeNotPageMultiple]
        );
        let mut opened = call(Func::Shmget, &[0x4d2, 0, 0], 8);
        opened.created = false;
        let foreign = Asked {
            creator_uid: Some(0),
            my_uid: 1000,
            page_size: 4096,
            queued: None,
        };
        let got: Vec<_> = after_call(&mut s, &opened, &Pre::default(), &foreign)
            .iter()
            .map(|f| (f.code, f.detail))
            .collect();
        assert_eq!(got, [(Code::ForeignCreator, [what::SEGMENT, 8, 0])]);
        let mine = Asked {
            creator_uid: Some(1000),
            ..foreign
        };
        assert!(after_call(&mut s, &opened, &Pre::default(), &mine).is_empty());
    }

    #[test]
    fn shmdt_twice_or_not_at_start() {
        let mut s = State::new();
        assert!(codes(&mut s, &call(Func::Shmdt, &[0x7000], 0), &Pre::default()).is_empty());
        let again = failed(Func::Shmdt, &[0x7000], libc::EINVAL);
        assert_eq!(
            codes(&mut s, &again, &Pre::default()),
            [Code::DoubleRelease]
        );
        let inside = failed(Func::Shmdt, &[0x9010], libc::EINVAL);
        let pre = Pre {
            inside_attachment: 0x9000,
            ..Pre::default()
        };
        let out = after_call(&mut s, &inside, &pre, &Asked::default());
        assert_eq!(
            out.iter().next().map(|f| (f.code, f.detail[1])),
            Some((Code::ShmdtNotAttachment, 0x9000))
        );
        // Attached again at the same address: detaching it is fine again.
        codes(
            &mut s,
            &call(Func::Shmat, &[5, 0, 0], 0x7000),
            &Pre::default(),
        );
        assert!(codes(&mut s, &call(Func::Shmdt, &[0x7000], 0), &Pre::default()).is_empty());
    }

    #[test]
    fn double_rmid_and_use_after_remove() {
        let mut s = State::new();
        let rmid = call(Func::Semctl, &[3, 0, int(libc::IPC_RMID)], 0);
        assert!(codes(&mut s, &rmid, &Pre::default()).is_empty());
        let again = failed(Func::Semctl, &[3, 0, int(libc::IPC_RMID)], libc::EINVAL);
        assert_eq!(
            codes(&mut s, &again, &Pre::default()),
            [Code::DoubleRelease]
        );
        let op = failed(Func::Semop, &[3, 0x10, 1], libc::EINVAL);
        assert_eq!(codes(&mut s, &op, &Pre::default()), [Code::UseAfterRemove]);
        // IPC_INFO's first argument is no id.
        let info = call(Func::Semctl, &[3, 0, int(libc::IPC_INFO)], 0);
        assert!(codes(&mut s, &info, &Pre::default()).is_empty());
        // A get returning the id again: it is a new object.
        let mut got = call(Func::Semget, &[0, 1, int(libc::IPC_CREAT | 0o600)], 3);
        got.created = true;
        codes(&mut s, &got, &Pre::default());
        assert!(
            codes(
                &mut s,
                &call(Func::Semop, &[3, 0x10, 1], 0),
                &Pre::default()
            )
            .is_empty()
        );
        // A segment removed while attached stays usable by id, but that is still a use.
        let shm_rmid = call(Func::Shmctl, &[9, int(libc::IPC_RMID | IPC_64), 0], 0);
        assert!(codes(&mut s, &shm_rmid, &Pre::default()).is_empty());
        let shmat = call(Func::Shmat, &[9, 0, 0], 0x8000);
        assert_eq!(
            codes(&mut s, &shmat, &Pre::default()),
            [Code::UseAfterRemove]
        );
    }

    #[test]
    fn holdings_from_semops_without_undo() {
        let mut s = State::new();
        let mut op = call(Func::Semop, &[3, 0x10, 2], 0);
        op.sops[0] = SemOp {
            num: 0,
            op: -1,
            flg: 0,
        };
        op.sops[1] = SemOp {
            num: 1,
            op: -1,
            flg: libc::SEM_UNDO as i16,
        };
        op.sops_read = 2;
        codes(&mut s, &op, &Pre::default());
        let zero = |_: i32, _: u16| Some(0);
        let at: Vec<_> = at_exit(&s, zero).map(|f| (f.code, f.detail)).collect();
        assert_eq!(at, [(Code::ExitHoldingSemaphore, [3, 0, 1])]);
        assert_eq!(
            at_exit(&s, |_, _| Some(1)).count(),
            0,
            "not at 0: nobody waits"
        );
        let setval = call(Func::Semctl, &[3, 0, int(libc::SETVAL), 1], 0);
        codes(&mut s, &setval, &Pre::default());
        assert_eq!(at_exit(&s, zero).count(), 0);
        codes(&mut s, &op, &Pre::default());
        let rmid = call(Func::Semctl, &[3, 0, int(libc::IPC_RMID)], 0);
        codes(&mut s, &rmid, &Pre::default());
        assert_eq!(at_exit(&s, zero).count(), 0);
    }

    #[test]
    fn mappings() {
        let mut s = State::new();
        let rwx = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        let args = [
            0,
            4096,
            int(rwx),
            int(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS),
            int(-1),
            0,
        ];
        assert_eq!(
            codes(&mut s, &call(Func::Mmap, &args, 0x7000), &Pre::default()),
            [Code::WriteExecMapping]
        );
        let failed_map = failed(Func::Mmap, &args, libc::ENOMEM);
        assert!(codes(&mut s, &failed_map, &Pre::default()).is_empty());
        let rw = [
            0x7000,
            4096,
            int(libc::PROT_READ | libc::PROT_WRITE),
            int(libc::MAP_PRIVATE | libc::MAP_FIXED),
            3,
            0,
        ];
        let pre = Pre {
            replaced: Some((0x7000, false)),
            ..Pre::default()
        };
        assert_eq!(
            codes(&mut s, &call(Func::Mmap64, &rw, 0x7000), &pre),
            [Code::FixedReplacesLive]
        );
        let never = Pre {
            never_mapped: true,
            ..Pre::default()
        };
        assert_eq!(
            codes(&mut s, &call(Func::Munmap, &[0x9000, 4096], 0), &never),
            [Code::MunmapNeverMapped]
        );
        assert!(
            codes(
                &mut s,
                &call(Func::Munmap, &[0x9000, 4096], 0),
                &Pre::default()
            )
            .is_empty()
        );
        let wx = Pre {
            source_wx: true,
            ..Pre::default()
        };
        let mremap = call(
            Func::Mremap,
            &[0x7000, 4096, 0, int(libc::MREMAP_MAYMOVE)],
            0xa000,
        );
        assert_eq!(codes(&mut s, &mremap, &wx), [Code::WriteExecMapping]);
    }
}
