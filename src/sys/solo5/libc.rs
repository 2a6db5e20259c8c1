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
    // SAFETY: `dst` is valid for writes and `src` for reads of `n` bytes,
    // not overlapping (the caller's contract); rep movsb copies exactly
    // those `n` bytes forward (the direction flag is clear per the ABI) and
    // touches nothing else (not the stack: `nostack`).
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
        // SAFETY: both regions are valid for `n` bytes (the caller's
        // contract), and a forward byte copy reads each byte of `src`
        // before writing over it, since `dst` starts before `src` or at or
        // past its end: memcpy's bytewise forward loop is exact here.
        return unsafe { memcpy(dst, src, n) };
    }
    // Here `n >= 1` (with `n == 0` the test above always holds).
    // SAFETY: `dst` is valid for `n` bytes (the caller's contract), so
    // `dst + n` is at most one past its end.
    let dst_end = unsafe { dst.add(n) };
    // SAFETY: as for `dst`.
    let src_end = unsafe { src.add(n) };
    // SAFETY: both regions are valid for `n` bytes and `dst` overlaps the
    // end of `src`: copy backwards from the last byte of each, so every
    // byte of `src` is read before it is overwritten; the direction flag is
    // set for the copy only and cleared again, as the ABI requires.
    unsafe {
        core::arch::asm!("std", "rep movsb", "cld",
                         inout("rcx") n => _, inout("rdi") dst_end.wrapping_sub(1) => _,
                         inout("rsi") src_end.wrapping_sub(1) => _, options(nostack));
    }
    dst
}

/// `memset`.
///
/// # Safety
/// C contract: `dst` valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: c_int, n: usize) -> *mut u8 {
    // SAFETY: `dst` is valid for writes of `n` bytes (the caller's
    // contract); rep stosb stores exactly those `n` bytes.
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
        // SAFETY: i < n and both regions are valid for `n` bytes (the
        // caller's contract), so `a + i` and `b + i` are inside them.
        let (pa, pb) = (unsafe { a.add(i) }, unsafe { b.add(i) });
        // SAFETY: `pa` points to a readable byte (above). Volatile keeps
        // LLVM from turning the loop back into a call to memcmp.
        let x = unsafe { pa.read_volatile() };
        // SAFETY: as for `pa`.
        let y = unsafe { pb.read_volatile() };
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
    // SAFETY: memcmp's contract, the same as bcmp's: both regions valid
    // for reads of `n` bytes.
    unsafe { memcmp(a, b, n) }
}

/// `strlen`.
///
/// # Safety
/// C contract: `s` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const c_char) -> usize {
    let mut n = 0;
    loop {
        // SAFETY: the caller guarantees a NUL at or after `s + n` (the loop
        // stops at the first one), so `s + n` is inside the string.
        let p = unsafe { s.add(n) };
        // SAFETY: `p` points to a byte of the string (above).
        if unsafe { p.read_volatile() } == 0 {
            break;
        }
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
    // SAFETY: the block is `size + align` bytes long, so `p + align` is
    // inside it (or one past its end when `size == 0`).
    let user = unsafe { p.add(align) }.cast::<usize>();
    // SAFETY: `align >= 16` bytes are reserved before `user`, so the two
    // words before it are inside the block.
    let (size_at, align_at) = (unsafe { user.sub(1) }, unsafe { user.sub(2) });
    // SAFETY: `size_at` is inside the block (above), writable, and 8-aligned
    // (`user` is `align`-aligned, a multiple of 16).
    unsafe { size_at.write(size) };
    // SAFETY: as for `size_at`.
    unsafe { align_at.write(align) };
    user.cast()
}

/// Size and alignment recorded by `c_alloc`, and the block's start.
///
/// # Safety
/// `p` comes from `c_alloc`.
unsafe fn c_layout(p: *mut c_void) -> (usize, usize, *mut u8) {
    let words = p.cast::<usize>();
    // SAFETY: `p` comes from `c_alloc` (the caller's contract), which put
    // its two header words just before `p`, inside the block.
    let (size_at, align_at) = (unsafe { words.sub(1) }, unsafe { words.sub(2) });
    // SAFETY: `size_at` is the header word c_alloc wrote (above).
    let size = unsafe { size_at.read() };
    // SAFETY: as for `size_at`.
    let align = unsafe { align_at.read() };
    // SAFETY: c_alloc placed `p` exactly `align` bytes after the block's
    // start, so this is the start of the block.
    let block = unsafe { p.cast::<u8>().sub(align) };
    (size, align, block)
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
    // SAFETY: `out` is valid for a write (the caller's contract).
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
    // SAFETY: a non-null `p` came from malloc/calloc/realloc/
    // posix_memalign (the caller's contract), i.e. from `c_alloc`.
    let (size, align, block) = unsafe { c_layout(p) };
    // SAFETY: c_alloc built this layout from these same numbers with
    // `Layout::from_size_align`, which accepted them.
    let layout = unsafe { std::alloc::Layout::from_size_align_unchecked(size + align, align) };
    // SAFETY: `block` was allocated with the global allocator with exactly
    // `layout` (c_alloc), and the caller frees it only once.
    unsafe { std::alloc::dealloc(block, layout) };
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
    // SAFETY: a non-null `p` came from one of the C allocation functions
    // (the caller's contract), i.e. from `c_alloc`.
    let (old, align, _) = unsafe { c_layout(p) };
    let q = c_alloc(size, align);
    if !q.is_null() {
        // SAFETY: `p` is valid for `old` bytes and `q`, a new block, for
        // `size` bytes: both for the smaller of the two, and they do not
        // overlap.
        unsafe { memcpy(q.cast(), p.cast(), old.min(size)) };
        // SAFETY: `p` came from c_alloc (above), and is freed once, here
        // (C's realloc frees it on success).
        unsafe { free(p) };
    }
    q
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
    // SAFETY: `buf` is valid for reads of `n` bytes (the caller's
    // contract), and the slice lives only during the call.
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
        // SAFETY: `iov` is valid for `cnt` entries (the caller's contract)
        // and `i < cnt`, so `iov + i` is one of them.
        let entry = unsafe { iov.add(i) };
        // SAFETY: `entry` points to a valid, initialised iovec (above).
        let v = unsafe { &*entry };
        // SAFETY: each entry's buffer is valid for its length (the caller's
        // contract), which is write's contract.
        total += unsafe { write(fd, v.base, v.len) };
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
    // SAFETY: per the contract above, `addr` was returned by `mmap` (the
    // global allocator, with `alloc_zeroed`) for a `len` giving this same
    // layout, and is unmapped once.
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
        // SAFETY: `fds` is valid for `n` entries (the caller's contract)
        // and `i < n`, so `fds + i` is one of them.
        let entry = unsafe { fds.add(i) };
        // SAFETY: `entry` points to a pollfd valid for a write (above).
        unsafe { (*entry).revents = 0 };
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
        // SAFETY: a non-null `old` is a writable glibc struct sigaction
        // (the caller's contract), 152 bytes long.
        unsafe { std::ptr::write_bytes(old.cast::<u8>(), 0, 152) };
        // SAFETY: as above; the handler is its first field.
        unsafe { (*old).handler = SIG_IGN };
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
    // SAFETY: `buf` is valid for `n` bytes (the caller's contract) and
    // `msg.len() <= n`; a fresh String does not overlap it.
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
    // SAFETY: `ts` is valid for a write (the caller's contract).
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
/// C contract: `req` valid for a read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nanosleep(req: *const TimeSpec, _rem: *mut TimeSpec) -> c_int {
    // SAFETY: `req` is valid for a read (the caller's contract).
    let r = unsafe { &*req };
    sleep_ns((r.sec.max(0) as u64) * 1_000_000_000 + r.nsec.max(0) as u64);
    0
}

/// `clock_nanosleep` (relative, or absolute on the monotonic clock).
///
/// # Safety
/// C contract: `req` valid for a read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_nanosleep(
    clock: c_int,
    flags: c_int,
    req: *const TimeSpec,
    rem: *mut TimeSpec,
) -> c_int {
    const TIMER_ABSTIME: c_int = 1;
    // SAFETY: `req` is valid for a read (the caller's contract).
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
        // SAFETY: `req` is valid for a read (our own contract), all that
        // nanosleep needs; it does not use `rem`.
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
/// C contract of each system call; for `getrandom` (the only one that
/// uses a pointer), `a1` is valid for writes of `a2` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(n: c_long, a1: usize, a2: usize, a3: usize) -> c_long {
    match n {
        SYS_GETRANDOM => {
            let _ = a3;
            // SAFETY: getrandom(buf, len, flags): `buf` is valid for writes
            // of `len` bytes (the caller's contract), and nothing else uses
            // it during the call.
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

/// Fills `buf` from the CPU's hardware generator ([`super::random`]).
/// Without one there is no entropy source in a Solo5 unikernel: stop
/// loudly rather than hand out predictable "random" numbers (HashMap
/// seeds, keys), which is what std (and the `getrandom` crate) would do
/// with an error here.
fn fill_random(buf: &mut [u8]) {
    if let Err(e) = super::random::fill(buf) {
        super::console_write(b"mkernel: FATAL: getrandom: ");
        super::console_write(e.to_string().as_bytes());
        super::console_write(b"; refusing to continue without randomness\n");
        abort();
    }
}

/// `getrandom(3)`: all of `len` bytes from the CPU's generator (`flags` do
/// not matter: it never blocks). Found by the `getrandom` crate through
/// [`dlsym`].
///
/// # Safety
/// C contract: `buf` is valid for writes of `len` bytes (or `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getrandom(buf: *mut c_void, len: usize, _flags: c_uint) -> isize {
    if len == 0 {
        return 0;
    }
    // SAFETY: `buf` is valid for writes of `len` bytes (the caller's
    // contract), and nothing else uses it during the call.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    fill_random(buf);
    len.min(isize::MAX as usize) as isize
}

/// `dlsym`: nothing is loaded dynamically in a unikernel, but code written
/// for glibc looks functions up this way before calling them (the
/// `getrandom` crate looks up `getrandom`, and falls back to opening
/// /dev/urandom, which a unikernel does not have). So [`getrandom`] is
/// found; any other name is not (NULL), and such code takes its fallback.
///
/// # Safety
/// C contract: `name` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlsym(_handle: *mut c_void, name: *const c_char) -> *mut c_void {
    // SAFETY: `name` is a valid NUL-terminated string (the caller's
    // contract), not changed during the call.
    let name = unsafe { std::ffi::CStr::from_ptr(name) };
    if name.to_bytes() == b"getrandom" {
        getrandom as *mut c_void
    } else {
        std::ptr::null_mut()
    }
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
    // SAFETY: `key` is valid for a write (the caller's contract).
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

/// `pthread_mutex_lock`: always free, there is one thread. Linked by the
/// `getrandom` 0.2 crate (ring's entropy, the `tls` feature) for its
/// `/dev/urandom` fallback, which never runs here: the `getrandom`
/// system call (below, `syscall`) always works.
#[unsafe(no_mangle)]
pub extern "C" fn pthread_mutex_lock(_mutex: *mut c_void) -> c_int {
    0
}

/// `pthread_mutex_unlock`: see [`pthread_mutex_lock`].
#[unsafe(no_mangle)]
pub extern "C" fn pthread_mutex_unlock(_mutex: *mut c_void) -> c_int {
    0
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
        // SAFETY: `cb` is a valid callback (the caller's contract); `info`
        // and the headers it points to live on this frame for the whole
        // call, and `data` is passed through as C does.
        Some(cb) => unsafe { cb(&mut info, size_of::<DlPhdrInfo>(), data) },
        None => 0,
    }
}
