//! `vfork`: not traced, but a vfork child runs in its parent's memory, so the hooks must know
//! when they run in one (`process::in_vfork_child`). A wrapper function cannot call vfork (the
//! child would return through, and the parent then reuse, the wrapper's stack frame), so this
//! trampoline marks the thread, then jumps to the real vfork as if the caller had called it.

use crate::platform::{process, real};

/// Marks the calling thread and returns the address to jump to.
extern "C" fn prepare() -> usize {
    process::vfork_starting();
    real::vfork_target()
}

#[cfg(target_arch = "x86_64")]
#[unsafe(no_mangle)]
#[unsafe(naked)]
pub unsafe extern "C" fn vfork() -> libc::pid_t {
    core::arch::naked_asm!(
        ".cfi_startproc",
        // Realign the stack for the call, keep the caller's return address where it is.
        "sub rsp, 8",
        ".cfi_adjust_cfa_offset 8",
        "call {prepare}",
        "add rsp, 8",
        ".cfi_adjust_cfa_offset -8",
        "jmp rax",
        ".cfi_endproc",
        prepare = sym prepare,
    )
}

#[cfg(target_arch = "aarch64")]
#[unsafe(no_mangle)]
#[unsafe(naked)]
pub unsafe extern "C" fn vfork() -> libc::pid_t {
    core::arch::naked_asm!(
        "stp x29, x30, [sp, #-16]!",
        "bl {prepare}",
        "ldp x29, x30, [sp], #16",
        "br x0",
        prepare = sym prepare,
    )
}
