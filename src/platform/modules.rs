//! The process's loaded objects, so that recorded return addresses can be symbolized after the
//! run (by `shmtrace`), never by the traced program.

use core::ffi::{CStr, c_int, c_void};

/// One loaded object: its file, load bias, and the address range of its loaded segments.
pub struct Module {
    pub path: Vec<u8>,
    pub base: u64,
    pub start: u64,
    pub end: u64,
}

/// Every object loaded now, the program first (named by `/proc/self/exe`).
pub fn loaded() -> Vec<Module> {
    let mut modules = Vec::new();
    // SAFETY: the callback only reads the dl_phdr_info it is given and pushes into the Vec
    // passed as `data`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut modules as *mut Vec<Module>).cast()) };
    modules
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our `data` (see `loaded`).
    let (info, modules) = unsafe { (&*info, &mut *data.cast::<Vec<Module>>()) };
    let mut low = u64::MAX;
    let mut high = 0u64;
    for i in 0..usize::from(info.dlpi_phnum) {
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD {
            low = low.min(ph.p_vaddr);
            high = high.max(ph.p_vaddr.saturating_add(ph.p_memsz));
        }
    }
    if low > high {
        return 0;
    }
    let name = if info.dlpi_name.is_null() {
        &[][..]
    } else {
        // SAFETY: a non-NULL dlpi_name is a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    // The program itself comes first, with an empty name.
    let path = if name.is_empty() && modules.is_empty() {
        exe_path()
    } else {
        name.to_vec()
    };
    let base = info.dlpi_addr;
    modules.push(Module {
        path,
        base,
        start: base.wrapping_add(low),
        end: base.wrapping_add(high),
    });
    0
}

/// The running program's path (`/proc/self/exe`), empty if unreadable.
pub fn exe_path() -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: readlink writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    buf.truncate(usize::try_from(n).unwrap_or(0));
    buf
}
