//! Names and texts both pictures show the same way.

use serde_json::Value;
use shmtrace_core::trace::event::Func;

use crate::merge::Process;
use crate::render::base_name;
use crate::symbols::Symbol;

/// The function's group (`shm`, `sem`, `mmap`): the event category.
pub fn category(func: &str) -> &'static str {
    Func::ALL
        .iter()
        .find(|f| f.name() == func)
        .map_or("other", |f| f.group().name())
}

/// The file name of the program a process ran last (`?` when unknown).
pub fn program_name(p: &Process) -> &str {
    base_name(
        p.exes
            .iter()
            .rev()
            .flatten()
            .next()
            .map_or("?", |e| e.as_str()),
    )
}

/// How a process ended: `exit 0`, `killed by SIGKILL`, `exited`, `did not exit normally`.
pub fn ending_text(p: &Process) -> String {
    match p.status {
        Some(status) => status.describe(),
        None => p.ending.label().to_string(),
    }
}

/// The frames of a stack as their texts, a JSON array.
pub fn stack_texts(stack: &[Symbol]) -> Value {
    stack.iter().map(Symbol::text).collect()
}
