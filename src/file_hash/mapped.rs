//! Read-only memory maps of files that survive the file being truncated.
//!
//! Reading a page of a map past the file's current end raises `SIGBUS`,
//! which kills the process (an editor that truncates and rewrites a large
//! input while a build hashes it). Every map made here is registered in a
//! fixed table; a `SIGBUS` handler that finds the faulting address in it
//! puts a page of zeros there and marks the map, so the read goes on and
//! [`Mapped::truncated`] reports the file as changed afterwards. A fault
//! anywhere else goes to the handler that was installed before (Rust's own,
//! which tells a stack overflow from anything else). A map beyond the table's
//! size is not made: the caller reads the file instead.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Maps hashed at the same time, at most (two per core is plenty).
const SLOTS: usize = 64;

struct Slot {
    used: AtomicBool,
    /// First byte of the map; 0 while the slot holds none.
    start: AtomicUsize,
    end: AtomicUsize,
    hit: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to build TABLE
const FREE: Slot = Slot {
    used: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    hit: AtomicBool::new(false),
};
static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
/// The `SIGBUS` action before ours, or `None` if ours could not be set.
static PREVIOUS: OnceLock<Option<libc::sigaction>> = OnceLock::new();

/// A read-only map of a whole file, unmapped on drop.
pub(super) struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
    slot: &'static Slot,
}

// The map is read-only and owned; the slot is atomics.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first `len` (> 0) bytes of `file`, or `None` when that
    /// cannot be done safely (no handler, a full table, a failed `mmap`).
    pub(super) fn new(file: &File, len: u64) -> Option<Mapped> {
        let len = usize::try_from(len).ok().filter(|l| *l > 0)?;
        PREVIOUS.get_or_init(install).as_ref()?;
        let slot = TABLE.iter().find(|s| {
            s.used
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        // SAFETY: a fresh shared read-only map of an open file; checked below.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            slot.used.store(false, Ordering::Release);
            return None;
        }
        slot.hit.store(false, Ordering::Relaxed);
        slot.end.store(ptr as usize + len, Ordering::Release);
        slot.start.store(ptr as usize, Ordering::Release);
        Some(Mapped { ptr, len, slot })
    }

    /// The mapped bytes. A page the file no longer has reads as zeros.
    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until drop; pages the file
        // loses are replaced, never left unreadable (see the module docs).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }

    /// Whether some page was read after the file had lost it.
    pub(super) fn truncated(&self) -> bool {
        self.slot.hit.load(Ordering::Acquire)
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        self.slot.start.store(0, Ordering::Release);
        self.slot.end.store(0, Ordering::Release);
        // SAFETY: unmaps exactly what `new` mapped (and any zero pages put
        // inside it), no longer borrowed: `bytes` borrows `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
        self.slot.used.store(false, Ordering::Release);
    }
}

/// Installs the handler; the action it replaced, or `None` on failure.
fn install() -> Option<libc::sigaction> {
    // SAFETY: plain libc calls on zeroed, then filled, structs.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE);
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = on_sigbus as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(libc::SIGBUS, &new, &mut old) == 0).then_some(old)
    }
}

/// The `SIGBUS` handler: only atomics, `mmap` and the previous handler.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in &TABLE {
        let start = slot.start.load(Ordering::Acquire);
        if start == 0 || addr < start || addr >= slot.end.load(Ordering::Acquire) {
            continue;
        }
        let page = addr & !(PAGE.load(Ordering::Relaxed) - 1);
        // SAFETY: replaces one page inside a map this module owns with
        // zeros; the faulting read then completes.
        let done = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                PAGE.load(Ordering::Relaxed),
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if done != libc::MAP_FAILED {
            slot.hit.store(true, Ordering::Release);
            return;
        }
    }
    // Not ours: what would have happened without this module.
    let Some(Some(prev)) = PREVIOUS.get() else {
        // Ours is being installed: the default action, so the repeated
        // fault kills as it would have (a bare return would repeat it
        // forever).
        // SAFETY: `signal` with SIG_DFL is async-signal-safe.
        unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
        return;
    };
    // SAFETY: calls or restores the action that was installed before ours.
    unsafe {
        if prev.sa_flags & libc::SA_SIGINFO != 0
            && prev.sa_sigaction != libc::SIG_DFL
            && prev.sa_sigaction != libc::SIG_IGN
        {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(prev.sa_sigaction);
            f(sig, info, ctx);
        } else if prev.sa_sigaction != libc::SIG_DFL && prev.sa_sigaction != libc::SIG_IGN {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(prev.sa_sigaction);
            f(sig);
        } else {
            // Default: restore it and return; the fault repeats and kills.
            libc::sigaction(libc::SIGBUS, prev, ptr::null_mut());
        }
    }
}
