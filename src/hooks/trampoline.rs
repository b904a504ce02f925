//! Naked entry points: each exported hook is a few instructions that append the caller's return
//! address as one more argument and transfer to its implementation in `calls`.
//!
//! Why naked trampolines: stable Rust has no way to read a function's return address, and cannot
//! define C-variadic functions. At a function's first instruction the return address is at a
//! known place (`[rsp]` on x86_64, `x30` on aarch64), and on both supported ABIs (System V
//! x86_64, AAPCS64 on Linux) a variadic integer or pointer argument travels in exactly the
//! register the next named parameter would use. So declaring `semctl`'s `union semun` and
//! `mremap`'s `new_address` as a fourth/fifth integer parameter receives them bit for bit,
//! whatever `cmd`/`flags` say and whether or not the caller passed them, and `real` hands them
//! on as variadic arguments again. No C shim, no unstable feature, no instruction that depends
//! on what the arguments mean.

/// `trampoline!(args; impl)`: the hook takes these integer-class arguments; `impl` takes them
/// plus the return address.
#[cfg(target_arch = "x86_64")]
macro_rules! trampoline {
    (; $imp:path) => { core::arch::naked_asm!("mov rdi, [rsp]", "jmp {}", sym $imp) };
    ($a:ident; $imp:path) => { core::arch::naked_asm!("mov rsi, [rsp]", "jmp {}", sym $imp) };
    ($a:ident, $b:ident; $imp:path) => {
        core::arch::naked_asm!("mov rdx, [rsp]", "jmp {}", sym $imp)
    };
    ($a:ident, $b:ident, $c:ident; $imp:path) => {
        core::arch::naked_asm!("mov rcx, [rsp]", "jmp {}", sym $imp)
    };
    ($a:ident, $b:ident, $c:ident, $d:ident; $imp:path) => {
        core::arch::naked_asm!("mov r8, [rsp]", "jmp {}", sym $imp)
    };
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident; $imp:path) => {
        core::arch::naked_asm!("mov r9, [rsp]", "jmp {}", sym $imp)
    };
    // Six register arguments are all taken: pass the seventh on the stack. The push also
    // restores the 16-byte alignment the call instruction expects; the CFI lets debuggers and
    // unwinders walk through the extra slot.
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident; $imp:path) => {
        core::arch::naked_asm!(
            ".cfi_startproc",
            "push qword ptr [rsp]",
            ".cfi_adjust_cfa_offset 8",
            "call {}",
            "add rsp, 8",
            ".cfi_adjust_cfa_offset -8",
            "ret",
            ".cfi_endproc",
            sym $imp
        )
    };
}

#[cfg(target_arch = "aarch64")]
macro_rules! trampoline {
    (; $imp:path) => { core::arch::naked_asm!("mov x0, x30", "b {}", sym $imp) };
    ($a:ident; $imp:path) => { core::arch::naked_asm!("mov x1, x30", "b {}", sym $imp) };
    ($a:ident, $b:ident; $imp:path) => { core::arch::naked_asm!("mov x2, x30", "b {}", sym $imp) };
    ($a:ident, $b:ident, $c:ident; $imp:path) => {
        core::arch::naked_asm!("mov x3, x30", "b {}", sym $imp)
    };
    ($a:ident, $b:ident, $c:ident, $d:ident; $imp:path) => {
        core::arch::naked_asm!("mov x4, x30", "b {}", sym $imp)
    };
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident; $imp:path) => {
        core::arch::naked_asm!("mov x5, x30", "b {}", sym $imp)
    };
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident; $imp:path) => {
        core::arch::naked_asm!("mov x6, x30", "b {}", sym $imp)
    };
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("shmtrace supports Linux on x86_64 and aarch64");

/// Exports the hook table's functions, each a trampoline to its namesake in `calls`.
macro_rules! export_hooks {
    ($($variant:ident $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty { $($property:tt)* })*) => {$(
        #[unsafe(no_mangle)]
        #[unsafe(naked)]
        #[allow(unused_variables)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            trampoline!($($arg),*; calls::$name)
        }
    )*};
}
