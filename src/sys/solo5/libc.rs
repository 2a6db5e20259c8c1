//! The C library symbols that Rust's precompiled std for
//! `x86_64-unknown-linux-gnu` references, implemented on Solo5.
//!
//! The set is what the final link of a unikernel reports undefined without
//! this file (`cargo mkernel` keeps that check: see `tests/solo5_spt.rs`).
//! Only memory, console output, clocks, sleeping, randomness and the
//! per-thread keys std uses really work; files, mappings and signals fail
//! with an errno (a unikernel has none of them), which std turns into
//! `io::Error`s.
//!
//! Every function here is called by foreign code through the C ABI; the
//! caller upholds the C contracts (valid pointers and lengths), which is
//! what the `SAFETY` comments rely on.

use std::ffi::{c_char, c_int, c_long, c_uint, c_void};
use std::sync::atomic::{AtomicI32, Ordering};

// errno values (Linux).
const EPERM: c_int = 1;
const ENOENT: c_int = 2;
const EBADF: c_int = 9;
const EAGAIN: c_int = 11;
const ENOMEM: c_int = 12;
const EINVAL: c_int = 22;
const ERANGE: c_int = 34;
const ENOSYS: c_int = 38;

static ERRNO: AtomicI32 = AtomicI32::new(0);

fn fail<T: From<i8>>(errno: c_int) -> T {
    ERRNO.store(errno, Ordering::Relaxed);
    T::from(-1)
}

/// `errno` of the one thread.
#[unsafe(no_mangle)]
pub extern "C" fn __errno_location() -> *mut c_int {
    ERRNO.as_ptr()
}

// ---------------------------------------------------------------- memory
// `rep movsb`/`rep stosb` in asm: written as loops, LLVM would turn these
// bodies into calls to memcpy/memset, i.e. to themselves.

/// `memcpy`.
///
/// # Safety
/// C contract: both regions valid for `n` bytes, not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller gives valid regions; rep movsb copies exactly n
    // bytes forward (the direction flag is clear per the ABI).
    unsafe {
        core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _,
                         inout("rsi") src => _, options(nostack, preserves_flags));
    }
    dst
}

/// `memmove`.
///
/// # Safety
/// C contract: both regions valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // Forward copy is safe: dst is before src or past its end.
        // SAFETY: as for memcpy.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: dst overlaps the end of src: copy backwards (direction flag
    // set for the copy only, cleared again as the ABI requires).
    unsafe {
        core::arch::asm!("std", "rep movsb", "cld",
                         inout("rcx") n => _, inout("rdi") dst.add(n).wrapping_sub(1) => _,
                         inout("rsi") src.add(n).wrapping_sub(1) => _, options(nostack));
    }
    dst
}

/// `memset`.
///
/// # Safety
/// C contract: `dst` valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: c_int, n: usize) -> *mut u8 {
    // SAFETY: the caller gives a valid region; rep stosb stores n bytes.
    unsafe {
        core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _,
                         in("al") c as u8, options(nostack, preserves_flags));
    }
    dst
}

/// `memcmp`.
///
/// # Safety
/// C contract: both regions valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    for i in 0..n {
        // SAFETY: i < n, inside both regions. Volatile keeps LLVM from
        // turning the loop back into a call to memcmp.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return c_int::from(x) - c_int::from(y);
        }
    }
    0
}

/// `bcmp` (equality only).
///
/// # Safety
/// C contract: both regions valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// `strlen`.
///
/// # Safety
/// C contract: `s` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: reads stop at the terminating NUL the caller guarantees.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}

// ------------------------------------------------------------------ heap
// C callers get the global allocator, with the layout kept in a header just
// before the returned pointer (free() is given no size).

const HEADER: usize = 16;

fn c_alloc(size: usize, align: usize) -> *mut c_void {
    let align = align.max(HEADER);
    let Some(layout) = size
        .checked_add(align)
        .and_then(|total| std::alloc::Layout::from_size_align(total, align).ok())
    else {
        ERRNO.store(ENOMEM, Ordering::Relaxed);
        return std::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    if p.is_null() {
        ERRNO.store(ENOMEM, Ordering::Relaxed);
        return p.cast();
    }
    // SAFETY: `align >= 16` bytes are reserved before the user pointer; the
    // header's two words fit there and are 8-aligned.
    unsafe {
        let user = p.add(align);
        user.cast::<usize>().sub(1).write(size);
        user.cast::<usize>().sub(2).write(align);
        user.cast()
    }
}

/// Size and alignment recorded by `c_alloc`, and the block's start.
///
/// # Safety
/// `p` comes from `c_alloc`.
unsafe fn c_layout(p: *mut c_void) -> (usize, usize, *mut u8) {
    // SAFETY: the header written by c_alloc precedes `p`.
    unsafe {
        let size = p.cast::<usize>().sub(1).read();
        let align = p.cast::<usize>().sub(2).read();
        (size, align, p.cast::<u8>().sub(align))
    }
}

/// `malloc`.
#[unsafe(no_mangle)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    c_alloc(size, HEADER)
}

/// `calloc`.
#[unsafe(no_mangle)]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        ERRNO.store(ENOMEM, Ordering::Relaxed);
        return std::ptr::null_mut();
    };
    let p = c_alloc(total, HEADER);
    if !p.is_null() {
        // SAFETY: p is valid for `total` bytes.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0, total) };
    }
    p
}

/// `posix_memalign`.
///
/// # Safety
/// C contract: `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align < size_of::<usize>() {
        return EINVAL;
    }
    let p = c_alloc(size, align);
    if p.is_null() {
        return ENOMEM;
    }
    // SAFETY: the caller's out pointer.
    unsafe { out.write(p) };
    0
}

/// `free`.
///
/// # Safety
/// C contract: `p` is null or from malloc/calloc/realloc/posix_memalign.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: p came from c_alloc, which used exactly this layout.
    unsafe {
        let (size, align, block) = c_layout(p);
        std::alloc::dealloc(
            block,
            std::alloc::Layout::from_size_align_unchecked(size + align, align),
        );
    }
}

/// `realloc`.
///
/// # Safety
/// As `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return malloc(size);
    }
    // SAFETY: p came from c_alloc; the copy covers the smaller of both sizes.
    unsafe {
        let (old, align, _) = c_layout(p);
        let q = c_alloc(size, align);
        if !q.is_null() {
            memcpy(q.cast(), p.cast(), old.min(size));
            free(p);
        }
        q
    }
}

// ------------------------------------------------------- console and files

/// `write`: fds 1 and 2 go to the Solo5 console.
///
/// # Safety
/// C contract: `buf` valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const u8, n: usize) -> isize {
    if fd != 1 && fd != 2 {
        return fail(EBADF);
    }
    // SAFETY: the caller's buffer.
    super::console_write(unsafe { std::slice::from_raw_parts(buf, n) });
    n as isize
}

/// An `iovec`.
#[repr(C)]
pub struct IoVec {
    base: *const u8,
    len: usize,
}

/// `writev`.
///
/// # Safety
/// C contract: `iov` valid for `cnt` entries, each valid for its length.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const IoVec, cnt: c_int) -> isize {
    if fd != 1 && fd != 2 {
        return fail(EBADF);
    }
    let mut total = 0;
    for i in 0..cnt.max(0) as usize {
        // SAFETY: the caller's iovec array and buffers.
        unsafe {
            let v = &*iov.add(i);
            total += write(fd, v.base, v.len);
        }
    }
    total
}

macro_rules! unsupported {
    ($($(#[$m:meta])* fn $name:ident($($arg:ident : $ty:ty),*) -> $ret:ty = $errno:expr;)*) => {$(
        $(#[$m])*
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($(_: $ty),*) -> $ret {
            fail($errno)
        }
    )*};
}

unsupported! {
    /// No files in a unikernel.
    fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int = ENOENT;
    /// No files in a unikernel.
    fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int = ENOENT;
    /// stdin is empty and nothing else is open.
    fn read(fd: c_int, buf: *mut u8, n: usize) -> isize = EBADF;
    /// Nothing is open.
    fn close(fd: c_int) -> c_int = EBADF;
    /// Nothing is open.
    fn lseek64(fd: c_int, off: i64, whence: c_int) -> i64 = EBADF;
    /// Nothing is open.
    fn fstat64(fd: c_int, buf: *mut c_void) -> c_int = EBADF;
    /// No files.
    fn stat64(path: *const c_char, buf: *mut c_void) -> c_int = ENOENT;
    /// No files.
    fn lstat64(path: *const c_char, buf: *mut c_void) -> c_int = ENOENT;
    /// No files.
    fn readlink(path: *const c_char, buf: *mut c_char, n: usize) -> isize = ENOENT;
    /// Nothing is open.
    fn dup(fd: c_int) -> c_int = EBADF;
    /// No thread attributes.
    fn pthread_attr_getstack(attr: *const c_void, addr: *mut *mut c_void, size: *mut usize) -> c_int = ENOSYS;
    /// No thread attributes.
    fn pthread_attr_getguardsize(attr: *const c_void, size: *mut usize) -> c_int = ENOSYS;
    /// No descriptors.
    fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> c_int = EBADF;
    /// No descriptors.
    fn ioctl(fd: c_int, req: c_long, arg: c_long) -> c_int = EBADF;
    /// No alternate signal stacks (no signals).
    fn sigaltstack(ss: *const c_void, old: *mut c_void) -> c_int = EPERM;
    /// No thread attributes to query: std then assumes no stack guard.
    fn pthread_getattr_np(t: usize, attr: *mut c_void) -> c_int = ENOSYS;
}

// ------------------------------------------------------------- mappings
// Solo5 has one flat heap and no page protection hypercall. Anonymous
// private mappings (corosensei's `DefaultStack`, std's fallbacks) are served
// as zeroed, page-aligned blocks of the heap; `mprotect` succeeds without
// protecting anything, so a stack's guard page is NOT enforced on Solo5.

const PAGE: usize = 4096;

fn map_layout(len: usize) -> Option<std::alloc::Layout> {
    let len = len.checked_add(PAGE - 1)? & !(PAGE - 1);
    std::alloc::Layout::from_size_align(len.max(PAGE), PAGE).ok()
}

/// `mmap`: anonymous private mappings only (no files, no fixed address).
#[unsafe(no_mangle)]
pub extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    _prot: c_int,
    flags: c_int,
    fd: c_int,
    _off: i64,
) -> *mut c_void {
    const MAP_PRIVATE: c_int = 0x02;
    const MAP_FIXED: c_int = 0x10;
    const MAP_ANONYMOUS: c_int = 0x20;
    const MAP_FAILED: *mut c_void = usize::MAX as *mut c_void;
    let anonymous = flags & MAP_ANONYMOUS != 0 && flags & MAP_PRIVATE != 0 && fd == -1;
    if !anonymous || flags & MAP_FIXED != 0 || !addr.is_null() {
        ERRNO.store(if anonymous { EINVAL } else { ENOSYS }, Ordering::Relaxed);
        return MAP_FAILED;
    }
    let Some(layout) = map_layout(len) else {
        ERRNO.store(ENOMEM, Ordering::Relaxed);
        return MAP_FAILED;
    };
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        ERRNO.store(ENOMEM, Ordering::Relaxed);
        return MAP_FAILED;
    }
    p.cast()
}

/// `mmap64`: as `mmap`.
#[unsafe(no_mangle)]
pub extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    mmap(addr, len, prot, flags, fd, off)
}

/// `munmap`: whole mappings made by `mmap` only (what Rust callers do).
///
/// # Safety
/// C contract, restricted as said: `addr`/`len` are exactly one mapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let Some(layout) = map_layout(len) else {
        return fail(EINVAL);
    };
    // SAFETY: per the contract above, `addr` was returned by `mmap` for a
    // `len` giving this same layout.
    unsafe { std::alloc::dealloc(addr.cast(), layout) };
    0
}

/// `mprotect`: no page protection on Solo5; succeeds without effect.
#[unsafe(no_mangle)]
pub extern "C" fn mprotect(_: *mut c_void, _: usize, _: c_int) -> c_int {
    0
}

/// `getcwd`: there is no file system; ENOENT as for a removed directory.
#[unsafe(no_mangle)]
pub extern "C" fn getcwd(_: *mut c_char, _: usize) -> *mut c_char {
    ERRNO.store(ENOENT, Ordering::Relaxed);
    std::ptr::null_mut()
}

/// `realpath`: no file system.
#[unsafe(no_mangle)]
pub extern "C" fn realpath(_: *const c_char, _: *mut c_char) -> *mut c_char {
    ERRNO.store(ENOENT, Ordering::Relaxed);
    std::ptr::null_mut()
}

/// `getenv`: a unikernel has no environment.
#[unsafe(no_mangle)]
pub extern "C" fn getenv(_: *const c_char) -> *mut c_char {
    std::ptr::null_mut()
}

/// `isatty`: the console is not a terminal std should care about.
#[unsafe(no_mangle)]
pub extern "C" fn isatty(_: c_int) -> c_int {
    0
}

/// A `pollfd`.
#[repr(C)]
pub struct PollFd {
    fd: c_int,
    events: i16,
    revents: i16,
}

/// `poll`: std's start-up checks that fds 0–2 are open; report them quiet
/// and valid (no `POLLNVAL`), so it does not try to open `/dev/null`.
///
/// # Safety
/// C contract: `fds` valid for `n` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut PollFd, n: u64, _timeout: c_int) -> c_int {
    for i in 0..n as usize {
        // SAFETY: the caller's array.
        unsafe { (*fds.add(i)).revents = 0 };
    }
    0
}

// --------------------------------------------------------------- signals

/// The start of glibc's `struct sigaction` (the handler comes first).
#[repr(C)]
pub struct SigAction {
    handler: usize,
}

const SIG_IGN: usize = 1;

/// `sigaction`: there are no signals. Report every handler as "ignore", so
/// std does not install its stack-overflow handler (which would need an
/// alternate stack from mmap); accept and drop new handlers.
///
/// # Safety
/// C contract: `old` is null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(
    _sig: c_int,
    _new: *const SigAction,
    old: *mut SigAction,
) -> c_int {
    if !old.is_null() {
        // SAFETY: the caller's struct sigaction (152 bytes in glibc).
        unsafe {
            std::ptr::write_bytes(old.cast::<u8>(), 0, 152);
            (*old).handler = SIG_IGN;
        }
    }
    0
}

/// `signal`: see `sigaction`; the previous handler was "ignore".
#[unsafe(no_mangle)]
pub extern "C" fn signal(_sig: c_int, _handler: usize) -> usize {
    SIG_IGN
}

// ------------------------------------------------------------- processes

/// `abort`: a Solo5 abort (exit status 255 from the tender).
#[unsafe(no_mangle)]
pub extern "C" fn abort() -> ! {
    super::console_write(b"mkernel: abort() called\n");
    // SAFETY: no preconditions; does not return.
    unsafe { solo5_sys::solo5_abort() };
    loop {
        std::hint::spin_loop();
    }
}

/// `exit`: leave with `code` (std calls it from `process::exit`).
#[unsafe(no_mangle)]
pub extern "C" fn exit(code: c_int) -> ! {
    super::exit(code)
}

/// `_exit`: as `exit`.
#[unsafe(no_mangle)]
pub extern "C" fn _exit(code: c_int) -> ! {
    super::exit(code)
}

/// `pause`: std calls it when a second thread races to exit, which cannot
/// happen with one thread; wait forever without spinning.
#[unsafe(no_mangle)]
pub extern "C" fn pause() -> c_int {
    loop {
        super::yield_until(u64::MAX);
    }
}

/// `getauxval`: no auxiliary vector (0, as for an absent entry).
#[unsafe(no_mangle)]
pub extern "C" fn getauxval(_: u64) -> u64 {
    0
}

/// `pthread_attr_destroy`: nothing to free.
#[unsafe(no_mangle)]
pub extern "C" fn pthread_attr_destroy(_: *mut c_void) -> c_int {
    0
}

/// `getpid`: one process.
#[unsafe(no_mangle)]
pub extern "C" fn getpid() -> c_int {
    1
}

/// `sysconf`: the page size; -1 (no limit / unknown) for the rest.
#[unsafe(no_mangle)]
pub extern "C" fn sysconf(name: c_int) -> c_long {
    const SC_PAGESIZE: c_int = 30;
    const SC_NPROCESSORS_ONLN: c_int = 84;
    match name {
        SC_PAGESIZE => 4096,
        SC_NPROCESSORS_ONLN => 1,
        _ => fail(EINVAL),
    }
}

/// `__xpg_strerror_r`: the errno number as text (no message table).
///
/// # Safety
/// C contract: `buf` valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xpg_strerror_r(errnum: c_int, buf: *mut u8, n: usize) -> c_int {
    let msg = format!("errno {errnum}\0");
    if msg.len() > n {
        return ERANGE;
    }
    // SAFETY: the caller's buffer holds at least msg.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), buf, msg.len()) };
    0
}

// ------------------------------------------------------------------ time

/// A `timespec`.
#[repr(C)]
pub struct TimeSpec {
    sec: i64,
    nsec: i64,
}

const CLOCK_REALTIME: c_int = 0;

/// `clock_gettime`: wall clock for `CLOCK_REALTIME`, Solo5's monotonic
/// clock for every other clock.
///
/// # Safety
/// C contract: `ts` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_gettime(clock: c_int, ts: *mut TimeSpec) -> c_int {
    let ns = if clock == CLOCK_REALTIME {
        super::clock_wall()
    } else {
        super::clock_monotonic()
    };
    // SAFETY: the caller's timespec.
    unsafe {
        ts.write(TimeSpec {
            sec: (ns / 1_000_000_000) as i64,
            nsec: (ns % 1_000_000_000) as i64,
        })
    };
    0
}

fn sleep_ns(ns: u64) {
    let deadline = super::clock_monotonic().saturating_add(ns);
    // solo5_yield may return early (a net device became ready).
    while super::clock_monotonic() < deadline {
        super::yield_until(deadline);
    }
}

/// `nanosleep` (std's `thread::sleep`).
///
/// # Safety
/// C contract: `req` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nanosleep(req: *const TimeSpec, _rem: *mut TimeSpec) -> c_int {
    // SAFETY: the caller's timespec.
    let r = unsafe { &*req };
    sleep_ns((r.sec.max(0) as u64) * 1_000_000_000 + r.nsec.max(0) as u64);
    0
}

/// `clock_nanosleep` (relative, or absolute on the monotonic clock).
///
/// # Safety
/// C contract: `req` valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_nanosleep(
    clock: c_int,
    flags: c_int,
    req: *const TimeSpec,
    rem: *mut TimeSpec,
) -> c_int {
    const TIMER_ABSTIME: c_int = 1;
    // SAFETY: the caller's timespec.
    let r = unsafe { &*req };
    let ns = (r.sec.max(0) as u64) * 1_000_000_000 + r.nsec.max(0) as u64;
    if flags & TIMER_ABSTIME != 0 {
        let now = if clock == CLOCK_REALTIME {
            super::clock_wall()
        } else {
            super::clock_monotonic()
        };
        sleep_ns(ns.saturating_sub(now));
        0
    } else {
        // SAFETY: same contract as nanosleep.
        unsafe { nanosleep(req, rem) }
    }
}

// ------------------------------------------------------------- syscall()

const SYS_GETRANDOM: c_long = 318;
const SYS_FUTEX: c_long = 202;
const SYS_GETTID: c_long = 186;

/// `syscall`, declared variadic in C; on x86_64 the integer arguments
/// arrive in the same registers either way. Only what std asks for:
/// `getrandom` (from the CPU's RDRAND/RDSEED), `futex` (one thread: waiting
/// would block forever, so WAIT returns EAGAIN and std re-checks), `gettid`.
///
/// # Safety
/// C contract of each system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(n: c_long, a1: usize, a2: usize, a3: usize) -> c_long {
    match n {
        SYS_GETRANDOM => {
            let _ = a3;
            // SAFETY: getrandom(buf, len, flags): the caller's buffer.
            let buf = unsafe { std::slice::from_raw_parts_mut(a1 as *mut u8, a2) };
            fill_random(buf);
            a2 as c_long
        }
        SYS_FUTEX => {
            const FUTEX_WAIT: usize = 0;
            const FUTEX_WAKE: usize = 1;
            const FUTEX_WAIT_BITSET: usize = 9;
            const FUTEX_WAKE_BITSET: usize = 10;
            match a2 & 0x7f {
                FUTEX_WAIT | FUTEX_WAIT_BITSET => fail(EAGAIN),
                FUTEX_WAKE | FUTEX_WAKE_BITSET => 0,
                _ => fail(ENOSYS),
            }
        }
        SYS_GETTID => 1,
        _ => fail(ENOSYS),
    }
}

/// Fills `buf` from the CPU's hardware generator. Without one there is no
/// entropy source in a Solo5 unikernel: stop loudly rather than hand out
/// predictable "random" numbers (HashMap seeds, keys).
fn fill_random(buf: &mut [u8]) {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // cpuid is available on every x86_64 CPU (a safe intrinsic).
    let rdrand = (__cpuid(1).ecx >> 30) & 1 == 1;
    let rdseed = (__cpuid_count(7, 0).ebx >> 18) & 1 == 1;
    if !rdrand && !rdseed {
        super::console_write(
            b"mkernel: FATAL: getrandom: this CPU has neither RDRAND nor RDSEED, and a Solo5 \
              unikernel has no other entropy source; refusing to continue without randomness\n",
        );
        abort();
    }
    for chunk in buf.chunks_mut(8) {
        // SAFETY: the feature was checked just above.
        let v = unsafe {
            if rdseed {
                hw_random::<true>()
            } else {
                hw_random::<false>()
            }
        };
        chunk.copy_from_slice(&v.to_ne_bytes()[..chunk.len()]);
    }
}

/// One 64-bit value from RDSEED (`SEED`) or RDRAND, retrying while the
/// generator reports underflow (the carry flag clear), as Intel advises.
///
/// # Safety
/// The CPU supports the chosen instruction.
#[target_feature(enable = "rdrand,rdseed")]
unsafe fn hw_random<const SEED: bool>() -> u64 {
    use core::arch::x86_64::{_rdrand64_step, _rdseed64_step};
    let mut v = 0;
    for _ in 0..1000 {
        // Safe inside this function, which enables the features.
        let ok = if SEED {
            _rdseed64_step(&mut v)
        } else {
            _rdrand64_step(&mut v)
        };
        if ok == 1 {
            return v;
        }
        std::hint::spin_loop();
    }
    super::console_write(b"mkernel: FATAL: the CPU's random generator keeps failing\n");
    abort()
}

// --------------------------------------------------------- pthread keys
// std's thread-local destructors use pthread keys (there is no
// `__cxa_thread_atexit_impl`). One thread, so a plain table.
// Never define `__pthread_key_create`: libgcc-style code takes its presence
// as "threads exist" and starts calling pthread mutexes.

const KEYS: usize = 128;

struct KeyTable {
    used: [bool; KEYS],
    values: [usize; KEYS],
}

static KEY_TABLE: spinning_top::Spinlock<KeyTable> = spinning_top::Spinlock::new(KeyTable {
    used: [false; KEYS],
    values: [0; KEYS],
});

/// `pthread_key_create` (destructors are not run: the unikernel's one
/// thread never exits before the image does).
///
/// # Safety
/// C contract: `key` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_key_create(key: *mut c_uint, _dtor: usize) -> c_int {
    let mut t = KEY_TABLE.lock();
    // Key 0 is never handed out: std treats 0 as "not yet created".
    let Some(k) = (1..KEYS).find(|&k| !t.used[k]) else {
        return EAGAIN;
    };
    t.used[k] = true;
    t.values[k] = 0;
    // SAFETY: the caller's key.
    unsafe { key.write(k as c_uint) };
    0
}

/// `pthread_key_delete`.
#[unsafe(no_mangle)]
pub extern "C" fn pthread_key_delete(key: c_uint) -> c_int {
    let mut t = KEY_TABLE.lock();
    match t.used.get_mut(key as usize) {
        Some(u @ true) => {
            *u = false;
            0
        }
        _ => EINVAL,
    }
}

/// `pthread_setspecific`.
#[unsafe(no_mangle)]
pub extern "C" fn pthread_setspecific(key: c_uint, value: *const c_void) -> c_int {
    let mut t = KEY_TABLE.lock();
    if !t.used.get(key as usize).copied().unwrap_or(false) {
        return EINVAL;
    }
    t.values[key as usize] = value as usize;
    0
}

/// `pthread_getspecific`.
#[unsafe(no_mangle)]
pub extern "C" fn pthread_getspecific(key: c_uint) -> *mut c_void {
    let t = KEY_TABLE.lock();
    t.values.get(key as usize).copied().unwrap_or(0) as *mut c_void
}

/// `pthread_self`: the one thread.
#[unsafe(no_mangle)]
pub extern "C" fn pthread_self() -> usize {
    1
}

// ------------------------------------------------------- dl_iterate_phdr

unsafe extern "C" {
    // From mkernel's linker script.
    static __executable_start: u8;
    static _end: u8;
    static __GNU_EH_FRAME_HDR: u8;
    static __eh_frame_hdr_end: u8;
}

/// An `Elf64_Phdr`.
#[repr(C)]
pub struct Phdr {
    p_type: u32,
    p_flags: u32,
    p_offset: u64,
    p_vaddr: u64,
    p_paddr: u64,
    p_filesz: u64,
    p_memsz: u64,
    p_align: u64,
}

/// A `struct dl_phdr_info`.
#[repr(C)]
pub struct DlPhdrInfo {
    addr: usize,
    name: *const c_char,
    phdr: *const Phdr,
    phnum: u16,
    adds: u64,
    subs: u64,
    tls_modid: usize,
    tls_data: *mut c_void,
}

/// `dl_iterate_phdr`: Solo5 does not map the ELF headers, so describe the
/// one static image: a `PT_LOAD` covering it and its `PT_GNU_EH_FRAME`.
///
/// # Safety
/// C contract: `cb` is a valid callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dl_iterate_phdr(
    cb: Option<unsafe extern "C" fn(*mut DlPhdrInfo, usize, *mut c_void) -> c_int>,
    data: *mut c_void,
) -> c_int {
    const PT_LOAD: u32 = 1;
    const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
    let start = &raw const __executable_start as u64;
    let end = &raw const _end as u64;
    let hdr = &raw const __GNU_EH_FRAME_HDR as u64;
    let hdr_end = &raw const __eh_frame_hdr_end as u64;
    let phdrs = [
        Phdr {
            p_type: PT_LOAD,
            p_flags: 5,
            p_offset: 0,
            p_vaddr: start,
            p_paddr: start,
            p_filesz: end - start,
            p_memsz: end - start,
            p_align: 0x1000,
        },
        Phdr {
            p_type: PT_GNU_EH_FRAME,
            p_flags: 4,
            p_offset: 0,
            p_vaddr: hdr,
            p_paddr: hdr,
            p_filesz: hdr_end - hdr,
            p_memsz: hdr_end - hdr,
            p_align: 4,
        },
    ];
    let mut info = DlPhdrInfo {
        addr: 0,
        name: c"".as_ptr(),
        phdr: phdrs.as_ptr(),
        phnum: phdrs.len() as u16,
        adds: 1,
        subs: 0,
        tls_modid: 0,
        tls_data: std::ptr::null_mut(),
    };
    match cb {
        // SAFETY: the caller's callback, given a valid info for the call.
        Some(cb) => unsafe { cb(&mut info, size_of::<DlPhdrInfo>(), data) },
        None => 0,
    }
}
