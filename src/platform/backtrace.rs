//! Deeper stacks (`SHMTRACE_STACK=N`): the return addresses of the N frames above a hooked
//! call's caller, taken at hook time with libgcc's unwinder, kept raw (symbolized after the run,
//! like `caller`).
//!
//! `_Unwind_Backtrace` walks the frames from here outwards using the `.eh_frame` tables: the
//! shim's own frames (this function, the tracked-call path, the hook), then the frame whose
//! instruction pointer is the recorded `caller` (the code that called the hooked function),
//! then the frames above it, which are the ones kept. Identifying the caller's frame by its
//! address, rather than counting the shim's frames, keeps it right whatever the compiler
//! inlined.
//!
//! Why it is safe in a hook: libgcc is already loaded (std links it), and on glibc >= 2.35 it
//! finds each frame's table with `_dl_find_object`, which neither allocates nor locks (before
//! that it uses `dl_iterate_phdr`, which takes the loader's recursive lock but does not
//! allocate either). The one allocation libgcc can make is the first lookup among frame tables
//! registered at run time with `__register_frame_info` (JIT compilers do that), which sorts
//! them with `malloc`: a host that registers frames should not enable stacks. The callback
//! below never panics and never allocates; errno is the tracked-call path's business (it saves
//! and restores it around this).

use core::ffi::{c_int, c_void};

use shmtrace_core::trace::event::Stack;

/// `struct _Unwind_Context`, opaque.
#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

/// `_Unwind_Reason_Code`: the callback returns `_URC_NO_REASON` to go on, anything else stops.
type ReasonCode = c_int;
const URC_NO_REASON: ReasonCode = 0;
const URC_END_OF_STACK: ReasonCode = 5;

type TraceFn = unsafe extern "C" fn(*mut UnwindContext, *mut c_void) -> ReasonCode;

// libgcc_s's unwinder interface (the Itanium C++ ABI's, section "Base ABI"), which std already
// links: nothing new is loaded.
unsafe extern "C" {
    fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> ReasonCode;
    fn _Unwind_GetIPInfo(context: *mut UnwindContext, ip_before_insn: *mut c_int) -> usize;
}

/// How many frames may lie between here and the caller's: the shim's own (a handful), with
/// room to spare. A caller not found by then (its frame has no unwind table, or the address
/// was not a return address) gives an empty stack rather than a walk of the whole thread.
const OWN_FRAMES_MAX: u32 = 32;

/// What the callback needs, through `_Unwind_Backtrace`'s `void *`.
struct Walk<'a> {
    caller: u64,
    found: bool,
    skipped: u32,
    want: usize,
    out: &'a mut Stack,
}

/// The return addresses of up to `depth` frames above the frame that `caller` returns into,
/// innermost first, into `out` (left empty if that frame is not found).
#[inline(never)]
#[cold]
pub fn capture(caller: u64, depth: usize, out: &mut Stack) {
    if depth == 0 || caller == 0 {
        return;
    }
    let mut walk = Walk {
        caller,
        found: false,
        skipped: 0,
        want: depth,
        out,
    };
    // SAFETY: `step` matches the callback type libgcc expects, and `walk` outlives the call
    // (the unwinder calls back synchronously, on this thread, before returning).
    unsafe { _Unwind_Backtrace(step, (&raw mut walk).cast()) };
}

/// Called by the unwinder once per frame, innermost first.
unsafe extern "C" fn step(context: *mut UnwindContext, arg: *mut c_void) -> ReasonCode {
    // SAFETY: `arg` is the `Walk` that `capture` passed, alive and not otherwise borrowed
    // while the unwinder runs.
    let walk = unsafe { &mut *arg.cast::<Walk<'_>>() };
    let mut before: c_int = 0;
    // SAFETY: `context` is the unwinder's live context for this frame.
    let ip = unsafe { _Unwind_GetIPInfo(context, &mut before) } as u64;
    if ip == 0 {
        return URC_END_OF_STACK;
    }
    if !walk.found {
        if ip == walk.caller {
            walk.found = true;
        } else {
            walk.skipped = walk.skipped.saturating_add(1);
            if walk.skipped > OWN_FRAMES_MAX {
                return URC_END_OF_STACK;
            }
        }
        return URC_NO_REASON;
    }
    // A frame interrupted by a signal holds the address of the instruction it was about to
    // run, not a return address: one past it, so that "the byte before" (how return addresses
    // are symbolized) lies in that instruction, as for the others.
    let addr = if before != 0 { ip.wrapping_add(1) } else { ip };
    if !walk.out.push(addr) || walk.out.len() >= walk.want {
        return URC_END_OF_STACK;
    }
    URC_NO_REASON
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame's address from the one calling this outwards (test helper: allocates).
    #[inline(never)]
    fn all_frames() -> Vec<u64> {
        unsafe extern "C" fn collect(context: *mut UnwindContext, arg: *mut c_void) -> ReasonCode {
            // SAFETY: `arg` is the Vec passed below.
            let frames = unsafe { &mut *arg.cast::<Vec<u64>>() };
            // SAFETY: the unwinder's live context.
            let ip = unsafe { _Unwind_GetIPInfo(context, &mut 0) } as u64;
            frames.push(ip);
            if frames.len() >= 64 {
                URC_END_OF_STACK
            } else {
                URC_NO_REASON
            }
        }
        let mut frames: Vec<u64> = Vec::new();
        // SAFETY: as in `capture`.
        unsafe { _Unwind_Backtrace(collect, (&raw mut frames).cast()) };
        frames
    }

    #[inline(never)]
    fn nested(levels: u32, probe: &mut dyn FnMut()) {
        if levels == 0 {
            probe();
        } else {
            nested(levels - 1, probe);
        }
        // Keeps the recursive call from being a tail call (each level keeps its frame).
        std::hint::black_box(levels);
    }

    #[test]
    fn keeps_the_frames_above_the_callers_frame() {
        nested(6, &mut || {
            let frames = all_frames();
            assert!(frames.len() > 8, "{frames:x?}");
            // As if the hooked call had been made from frame 2: keep frames 3...
            let caller = frames[2];
            for depth in [1, 3, 5] {
                let mut stack = Stack::new();
                capture(caller, depth, &mut stack);
                assert_eq!(stack.as_slice(), &frames[3..3 + depth], "{frames:x?}");
            }
        });
    }

    #[test]
    fn depth_is_capped_by_the_stack_and_the_frames_there_are() {
        nested(20, &mut || {
            let frames = all_frames();
            let mut stack = Stack::new();
            capture(frames[2], 100, &mut stack);
            assert_eq!(stack.len(), shmtrace_core::trace::event::STACK_MAX);
            assert_eq!(stack.as_slice(), &frames[3..3 + stack.len()]);
        });
    }

    #[test]
    fn nothing_when_off_or_when_the_caller_is_not_a_frame() {
        let mut stack = Stack::new();
        capture(0x1234, 4, &mut stack);
        assert!(stack.is_empty(), "an address no frame returns into");
        capture(0, 4, &mut stack);
        assert!(stack.is_empty());
        let frames = all_frames();
        capture(frames[1], 0, &mut stack);
        assert!(stack.is_empty(), "depth 0 walks nothing");
    }
}
