//! Supervising a run, as `strace -f` does: shmtrace is the subreaper of the program's tree
//! (orphaned descendants become its children), waits for the root program and then for every
//! descendant it left running (bounded by `--wait`), and keeps itself alive through the signals
//! the tree sends to its own process group.
//!
//! Signals are caught with `SA_SIGINFO` and written, as (signal, code, sender), to a pipe the
//! wait loop polls: the decisions (whose signal it is, whom to pass it to) are taken there, out
//! of the handler.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use libc::c_int;

use crate::kernel::parent_of;
use crate::watch::Watch;

/// The write end of the signal pipe, for the handler (-1: none).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

/// Signals a process group commonly receives (a server stopping or reloading its workers);
/// SIGCHLD wakes the wait loop.
const CAUGHT: [c_int; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCHLD,
];

/// How long the wait for descendants lasts before shmtrace says what it is waiting for.
const NOTICE_AFTER: Duration = Duration::from_secs(1);

/// What the handler writes: a pipe write this small is atomic.
type Note = [c_int; 3];

extern "C" fn on_signal(signo: c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: errno is thread-local; the handler only reads and restores it.
    let saved = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, pid) = unsafe { ((*info).si_code, (*info).si_pid()) };
    let note: Note = [signo, code, pid];
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer lives for the call. A full pipe
        // drops the note: the loop also polls with a timeout.
        unsafe { libc::write(fd, note.as_ptr().cast(), size_of::<Note>()) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// The handlers installed for a run; the previous dispositions come back on drop. A signal
/// shmtrace was started with ignored stays ignored, for the program too (`nohup shmtrace ...`).
pub struct Signals {
    saved: Vec<(c_int, libc::sigaction)>,
    read_fd: c_int,
    write_fd: c_int,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let mut fds = [0 as c_int; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        PIPE_WRITE.store(fds[1], Ordering::Relaxed);
        let mut saved = Vec::new();
        for sig in CAUGHT {
            // SAFETY: an all-zero sigaction is a valid value to be filled in.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: valid signal number; a null new action only reads the current one.
            unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
            if old.sa_sigaction == libc::SIG_IGN && sig != libc::SIGCHLD {
                continue;
            }
            // SAFETY: as above.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_signal as *const () as usize;
            // poll(2) is interrupted all the same; other calls go on.
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            // SAFETY: valid signal number and initialised structs; the handler is
            // async-signal-safe.
            unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
            saved.push((sig, old));
        }
        Ok(Signals {
            saved,
            read_fd: fds[0],
            write_fd: fds[1],
        })
    }

    /// Waits up to `timeout` for a note, and returns every note there is.
    fn wait(&self, timeout: Duration) -> Vec<Note> {
        let mut poll = libc::pollfd {
            fd: self.read_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: one valid pollfd. EINTR (a signal) just ends the wait early.
        unsafe { libc::poll(&mut poll, 1, ms) };
        let mut notes: Vec<Note> = Vec::new();
        loop {
            let mut note: Note = [0; 3];
            // SAFETY: reads at most the note's size into it; the descriptor is non-blocking.
            let n =
                unsafe { libc::read(self.read_fd, note.as_mut_ptr().cast(), size_of::<Note>()) };
            if n != size_of::<Note>() as isize {
                break;
            }
            notes.push(note);
        }
        notes
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for (sig, old) in &self.saved {
            // SAFETY: restores the disposition saved by `install` for the same signal.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
        PIPE_WRITE.store(-1, Ordering::Relaxed);
        // SAFETY: the descriptors are ours, and the handler no longer writes to them.
        unsafe {
            libc::close(self.read_fd);
            libc::close(self.write_fd);
        }
    }
}

/// Makes shmtrace the subreaper of every process it starts from now on.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How the run ended, as shmtrace saw it.
pub struct Ended {
    /// The root program's raw wait status.
    pub root_status: c_int,
    /// Every process shmtrace reaped: the root and the descendants reparented to it.
    pub reaped: BTreeSet<i32>,
}

/// Waits for the root program, passing it the signals sent to shmtrace from outside, then
/// for its descendants: until none is left, `wait` has passed (`None`: no limit), or a
/// signal from outside the tree asks for the report now. Meanwhile `watch` looks for
/// deadlocks.
pub fn wait_for_tree(
    signals: &Signals,
    root: i32,
    wait: Option<Duration>,
    run_dir: &Path,
    program: &str,
    mut watch: Option<Watch>,
) -> Ended {
    let mut tree: HashSet<i32> = HashSet::from([root]);
    let mut root_status = None;
    let mut root_ended_at = Instant::now();
    let mut noticed = false;
    let mut report_now = false;
    let mut notes: Vec<Note> = Vec::new();
    loop {
        // Judged before reaping: a sender that is our child is still a zombie then.
        for [signo, code, sender] in notes.drain(..) {
            if signo == libc::SIGCHLD || from_tree(code, sender, &tree, run_dir) {
                continue;
            }
            match (root_status, signo) {
                // The terminal sent it to the program's group as well (system(3) does so).
                (None, libc::SIGINT | libc::SIGQUIT) => {}
                (None, _) => {
                    // SAFETY: kill(2) on our own child, which is not reaped yet.
                    unsafe { libc::kill(root, signo) };
                }
                (Some(_), _) => report_now = true,
            }
        }
        let no_children = reap(&mut tree, root, &mut root_status, &mut root_ended_at);
        let mut timeout = Duration::from_secs(1);
        if let Some(status) = root_status {
            let waited = root_ended_at.elapsed();
            if no_children || report_now || wait.is_some_and(|w| waited >= w) {
                return Ended {
                    root_status: status,
                    reaped: tree.into_iter().collect(),
                };
            }
            if !noticed && waited >= NOTICE_AFTER {
                noticed = true;
                notice(program, wait);
            }
            if let Some(w) = wait {
                timeout = timeout.min(w.saturating_sub(waited));
            }
        }
        if let Some(watch) = watch.as_mut() {
            timeout = timeout.min(watch.tick());
        }
        notes = signals.wait(timeout);
    }
}

/// Reaps every child that ended; `true` when shmtrace has no child left at all.
fn reap(
    tree: &mut HashSet<i32>,
    root: i32,
    root_status: &mut Option<c_int>,
    root_ended_at: &mut Instant,
) -> bool {
    loop {
        let mut status: c_int = 0;
        // SAFETY: a valid pointer for the status; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return false,
            -1 => {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return true;
            }
            pid => {
                tree.insert(pid);
                if pid == root {
                    *root_status = Some(status);
                    *root_ended_at = Instant::now();
                }
            }
        }
    }
}

/// Whether a signal was sent by a process of the run's tree (to its own process group, most
/// likely): by a process that descends from shmtrace, that shmtrace reaped, or that wrote a
/// log of this run.
fn from_tree(code: c_int, sender: i32, tree: &HashSet<i32>, run_dir: &Path) -> bool {
    let sent = matches!(code, libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL);
    if !sent || sender <= 0 {
        return false;
    }
    tree.contains(&sender)
        || descends_from_us(sender)
        || run_dir.join(format!("{sender}.bin")).exists()
}

fn descends_from_us(pid: i32) -> bool {
    let me = std::process::id() as i32;
    let mut pid = pid;
    // Bounded: a pid read while the tree changes must not loop.
    for _ in 0..256 {
        match parent_of(pid) {
            Some(p) if p == me => return true,
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

/// shmtrace's living children (after the root ended: the descendants it left, reparented).
fn children() -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(i32, String)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| parent_of(*pid) == Some(me))
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (pid, comm.trim().to_string())
        })
        .collect();
    found.sort();
    found
}

/// Says, once, what shmtrace is waiting for after the program ended.
fn notice(program: &str, wait: Option<Duration>) {
    let waiting = children();
    if waiting.is_empty() {
        return;
    }
    let list: Vec<String> = waiting
        .iter()
        .take(5)
        .map(|(pid, comm)| format!("{pid} {comm}"))
        .collect();
    let more = if waiting.len() > 5 { ", ..." } else { "" };
    let limit = match wait {
        Some(w) => format!("at most {} s more", w.as_secs()),
        None => "--wait SECONDS bounds this".to_string(),
    };
    eprintln!(
        "shmtrace: {program} ended; waiting for the {} {} it left running ({}{more}): {limit}; \
         Ctrl-C reports now",
        waiting.len(),
        if waiting.len() == 1 {
            "process"
        } else {
            "processes"
        },
        list.join(", ")
    );
}
