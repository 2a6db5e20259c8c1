//! Reporting a task's stack overflow as such, instead of a bare SIGSEGV.
//!
//! A fault inside the guard page of the task running on the faulting
//! thread is a stack overflow: the handler (running on the thread's
//! alternate signal stack) prints which task overflowed and aborts. The
//! scheduler tells it which task runs through the `running` function given
//! to [`install`] (it reads the scheduler without borrowing it, so a switch
//! records nothing for the handler). Any other fault is handed back to the
//! handler that was there before (Rust's own, which reports overflows of
//! the thread's main stack), so nothing else changes.

use crate::sys::Running;
use std::sync::OnceLock;

struct Previous {
    segv: libc::sigaction,
    bus: libc::sigaction,
    running: fn() -> Option<Running>,
}
// SAFETY: `sigaction` is plain data (handler addresses and flags), and a
// `fn` pointer is `Send`.
unsafe impl Send for Previous {}
// SAFETY: as above; it is written once, before the handler can run.
unsafe impl Sync for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();

thread_local! {
    static ALTSTACK_CHECKED: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Installs the handler once per process and makes sure this thread has
/// an alternate signal stack (the handler cannot run on the stack that
/// just overflowed). `running` names the task running on the faulting
/// thread; it runs inside a signal handler, so it must only read.
pub(crate) fn install(running: fn() -> Option<Running>) {
    PREVIOUS.get_or_init(|| {
        // SAFETY: an all-zero `sigaction` is a valid value (integers, a
        // signal set, and an `Option` of a function pointer: `None`).
        let mut act: libc::sigaction = unsafe { core::mem::zeroed() };
        act.sa_sigaction = handler as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `act.sa_mask` is a valid, writable signal set.
        unsafe { libc::sigemptyset(&mut act.sa_mask) };
        // SAFETY: as for `act`.
        let mut segv: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: as for `act`.
        let mut bus: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: `act` is fully initialised, and its handler has the
        // three-argument signature that SA_SIGINFO calls with; `segv` is
        // writable. The previous action is saved so that other faults keep
        // their handling.
        unsafe { libc::sigaction(libc::SIGSEGV, &act, &mut segv) };
        // SAFETY: as for SIGSEGV.
        unsafe { libc::sigaction(libc::SIGBUS, &act, &mut bus) };
        Previous { segv, bus, running }
    });
    if !ALTSTACK_CHECKED.with(|c| c.replace(true)) {
        ensure_altstack();
    }
}

fn ensure_altstack() {
    // SAFETY: an all-zero stack_t is a valid value (pointer, flags, size).
    let mut old: libc::stack_t = unsafe { core::mem::zeroed() };
    // SAFETY: querying the current alternate stack with a null new one.
    unsafe { libc::sigaltstack(core::ptr::null(), &mut old) };
    if old.ss_flags & libc::SS_DISABLE == 0 {
        return; // std (or the user) already gave this thread one
    }
    let size = 64 * 1024;
    // The stack lives as long as the thread may take signals: leak it.
    let mem: &'static mut [u8] = Box::leak(vec![0u8; size].into_boxed_slice());
    let st = libc::stack_t {
        ss_sp: mem.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: size,
    };
    // SAFETY: `st` describes leaked memory valid for the thread's life.
    unsafe { libc::sigaltstack(&st, core::ptr::null_mut()) };
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let info = unsafe { &*info };
    // SAFETY: this handler is installed for SIGSEGV and SIGBUS only, for
    // which the kernel fills in `si_addr`, the union member this reads.
    let addr = unsafe { info.si_addr() } as usize;
    let prev = PREVIOUS.get();
    if let Some(cur) = prev.and_then(|p| (p.running)())
        && addr >= cur.guard.0
        && addr < cur.guard.1
    {
        let mut w = Writer;
        if cur.main {
            w.s("\nmkernel: the main task (task ");
            w.n(cur.task);
            w.s(")");
        } else {
            w.s("\nmkernel: task ");
            w.n(cur.task);
            w.s(" (spawned at ");
            w.s(cur.site.file());
            w.s(":");
            w.n(cur.site.line() as u64);
            w.s(")");
        }
        w.s(" overflowed its stack of ");
        w.n((cur.stack_size / 1024) as u64);
        w.s(" KiB; give tasks more with mkernel::Builder::stack_size\n");
        // SAFETY: abort is async-signal-safe.
        unsafe { libc::abort() };
    }
    // Not ours: put the previous action back and return; the faulting
    // instruction runs again and gets the previous handling.
    if let Some(prev) = prev {
        let old = if sig == libc::SIGBUS {
            &prev.bus
        } else {
            &prev.segv
        };
        // SAFETY: restoring an action obtained from sigaction.
        unsafe { libc::sigaction(sig, old, core::ptr::null_mut()) };
    }
}

/// Writes to stderr without allocating (we are in a signal handler).
struct Writer;
impl Writer {
    fn s(&mut self, s: &str) {
        // SAFETY: write(2) is async-signal-safe; the buffer is valid.
        unsafe { libc::write(2, s.as_ptr().cast(), s.len()) };
    }
    fn n(&mut self, mut v: u64) {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        // SAFETY: as in `s`.
        unsafe { libc::write(2, buf[i..].as_ptr().cast(), buf.len() - i) };
    }
}
