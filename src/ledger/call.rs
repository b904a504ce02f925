//! What the ledger needs of one completed call: its function, arguments, result and caller,
//! the stack above the caller and the name it carries when there are any.
//!
//! A logged call has an [`Event`] (a few hundred bytes, most of them for the log), and the
//! ledger reads it through [`Call::of`]; a call that is not logged (the mapping calls with the
//! log off) builds only this, which is a few words.

use shmtrace_core::trace::event::{Event, Func, Name, Phase, Stack};

static NO_NAME: Name = Name::new();
static NO_STACK: Stack = Stack::new();

/// One completed call, as the ledger sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub func: Func,
    /// As in [`Event::args`]: each argument's raw bits, C `int`s sign-extended.
    pub args: &'a [u64; 6],
    /// The real call's result; pointers as their address.
    pub ret: i64,
    /// The return address into the caller of the hooked function.
    pub caller: u64,
    /// The name the call carries (see [`Event::name`]); empty for most calls.
    pub name: &'a Name,
    /// The frames above the caller (`SHMTRACE_STACK`); empty by default.
    pub stack: &'a Stack,
}

impl<'a> Call<'a> {
    /// A call with no name and no stack.
    #[inline(always)]
    pub fn new(func: Func, args: &'a [u64; 6], ret: i64, caller: u64) -> Call<'a> {
        Call {
            func,
            args,
            ret,
            caller,
            name: &NO_NAME,
            stack: &NO_STACK,
        }
    }

    /// The completed call `ev` records; `None` for an enter record (the call has not returned).
    pub fn of(ev: &'a Event) -> Option<Call<'a>> {
        (ev.phase == Phase::Exit).then_some(Call {
            func: ev.func,
            args: &ev.args,
            ret: ev.ret,
            caller: ev.caller,
            name: &ev.name,
            stack: &ev.stack,
        })
    }

    /// Whether the call failed (its function's failure value).
    #[inline(always)]
    pub fn failed(&self) -> bool {
        self.ret == self.func.failure_value()
    }

    /// Argument `i` as the C `int` it was.
    #[inline(always)]
    pub fn arg_int(&self, i: usize) -> i32 {
        self.args.get(i).copied().unwrap_or(0) as i32
    }

    /// The frames above the caller, innermost first.
    #[inline(always)]
    pub fn stack(&self) -> &'a [u64] {
        self.stack.as_slice()
    }

    /// The name's bytes.
    #[inline(always)]
    pub fn name(&self) -> &'a [u8] {
        self.name.as_bytes()
    }

    /// The event a logged call would have had, without what only a record shows (thread,
    /// time, duration): for the paths that take an event (the queue kept while a fork is
    /// prepared, detection in full).
    pub fn to_event(&self, pid: i32, errno: i32) -> Event {
        let mut ev = Event::new(Phase::Exit, self.func);
        ev.pid = pid;
        ev.caller = self.caller;
        ev.args = *self.args;
        ev.ret = self.ret;
        ev.errno = if self.failed() { errno } else { 0 };
        ev.name = *self.name;
        ev.stack = *self.stack;
        ev
    }
}
