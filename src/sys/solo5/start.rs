//! Start of day: `solo5_app_main`, called by the Solo5 bindings.
//!
//! std's own runtime start (glibc's `__libc_start_main`) is not there, so
//! this does its job for a static image: set up the thread pointer and the
//! TLS block, give the heap to the global allocator, run `.init_array` (std
//! records argc/argv there), and call the C `main` that rustc emits for a
//! bin, which runs std's `lang_start` and the program's `main`.

use std::ffi::{c_char, c_int};

use solo5_sys as sys;
use talc::TalcLock;
use talc::source::Manual;

// Link the unwinder: std's panic runtime calls `_Unwind_*`, which nothing
// else provides in the image.
use unwinding as _;

/// The heap allocator; the memory is claimed in `solo5_app_main`.
#[global_allocator]
static ALLOCATOR: TalcLock<spinning_top::RawSpinlock, Manual> = TalcLock::new(Manual);

/// Bytes kept at the top of Solo5's heap region for the initial stack,
/// which Solo5 starts at the end of that region, growing down. Task stacks
/// are allocated separately; this one runs `main` and the scheduler.
const INITIAL_STACK: usize = 1 << 20;

/// Room after the thread pointer: the self-pointer at `%fs:0`, and zeros
/// where glibc's TCB keeps fields some code may read (e.g. `%fs:0x28`).
const TCB_SIZE: usize = 256;

/// Bytes given to the allocator at start-up (0 until then).
static HEAP_SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The heap: bytes given to the allocator at start-up (what the tender's
/// `--mem` leaves after the image, the TLS block and the initial stack),
/// and bytes allocated now.
pub(crate) fn heap() -> Option<(usize, usize)> {
    let size = HEAP_SIZE.load(std::sync::atomic::Ordering::Relaxed);
    (size > 0).then(|| (size, ALLOCATOR.lock().counters().allocated_bytes))
}

unsafe extern "C" {
    // Defined by mkernel's linker script (cargo-mkernel/src/unikernel.ld);
    // the TLS values are absolute symbols, read through their addresses.
    static __tls_start: u8;
    static __tls_filesz: u8;
    static __tls_memsz: u8;
    static __tls_align: u8;
    static __init_array_start: InitFn;
    static __init_array_end: InitFn;
    /// The C entry point rustc generates for a bin crate.
    fn main(argc: c_int, argv: *const *const c_char) -> c_int;
}

type InitFn = unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char);

fn round_up(x: usize, align: usize) -> usize {
    x.div_ceil(align) * align
}

/// Entry point called by the Solo5 bindings once the platform is up.
///
/// # Safety
/// Called exactly once by Solo5, with a valid start info.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn solo5_app_main(info: *const sys::solo5_start_info) -> c_int {
    // SAFETY: Solo5 passes a valid, read-only start info.
    let info = unsafe { &*info };
    let heap_start = info.heap_start;
    let heap_end = heap_start + info.heap_size as usize - INITIAL_STACK;

    // --- TLS (x86_64 variant II: the block ends at the thread pointer) ---
    //
    // The linker resolved every `%fs:-N` offset as `N = (tls_start +
    // round_up(memsz, p_align)) - addr`, with `p_align` the PT_TLS
    // alignment (`__tls_align`). The block must start exactly
    // `round_up(memsz, p_align)` below the thread pointer: rounding with
    // any other alignment shifts every thread-local (an earlier version
    // rounded with max(p_align, 16), which broke every image whose TLS size
    // is a multiple of 8 but not of 16). Only the thread pointer itself may
    // be aligned more strictly (a multiple of p_align stays a multiple).
    let tls_start = &raw const __tls_start as usize;
    let filesz = &raw const __tls_filesz as usize;
    let memsz = &raw const __tls_memsz as usize;
    let tls_align = (&raw const __tls_align as usize).max(1);
    let off = round_up(memsz, tls_align);
    let tp = round_up(heap_start + off, tls_align.max(16));
    //
    // The TLS block and TCB, [tp - off, tp + TCB_SIZE), lie at the start of
    // the heap region, which is ours and not yet used by anything (the
    // allocator gets what follows them, below).
    let block = (tp - off) as *mut u8;
    // SAFETY: the template [tls_start, tls_start + filesz) is the linker's
    // .tdata, readable, in the image; [block, block + filesz) lies in the
    // TLS block (filesz <= memsz <= off), in the heap region, which does
    // not overlap the image.
    unsafe { std::ptr::copy_nonoverlapping(tls_start as *const u8, block, filesz) };
    // SAFETY: filesz <= off, so `block + filesz` is inside the TLS block.
    let bss = unsafe { block.add(filesz) };
    // SAFETY: [bss, tp + TCB_SIZE) is the rest of the TLS block (.tbss)
    // and the TCB, unused heap memory (above).
    unsafe { std::ptr::write_bytes(bss, 0, off - filesz + TCB_SIZE) };
    // SAFETY: `tp` is 16-aligned and its first word is in the TCB, just
    // zeroed (above).
    unsafe { *(tp as *mut usize) = tp };
    // SAFETY: the hypercall only sets the %fs base; `tp` now points to a
    // TCB whose first word is its own address (what `%fs:0` must hold), and
    // the TLS block below it is initialised, so every thread-local access
    // from here on reads that block.
    if unsafe { sys::solo5_set_tls_base(tp as _) } != sys::solo5_result_t_SOLO5_R_OK {
        super::console_write(b"mkernel: solo5_set_tls_base failed\n");
        return 255;
    }

    // --- Heap ---
    let base = round_up(tp + TCB_SIZE, 64);
    // SAFETY: [base, heap_end) is unused memory of the heap region, below
    // the initial stack's reserve; it is handed over once, before any
    // allocation.
    let claimed = unsafe { ALLOCATOR.lock().claim(base as *mut u8, heap_end - base) };
    if claimed.is_none() {
        super::console_write(b"mkernel: the heap region is too small\n");
        return 255;
    }
    HEAP_SIZE.store(heap_end - base, std::sync::atomic::Ordering::Relaxed);

    // --- argv from the Solo5 command line ---
    // (Solo5's cmdline may be null when empty on some targets.)
    let cmdline = if info.cmdline.is_null() {
        String::new()
    } else {
        // SAFETY: a non-null cmdline is a NUL-terminated string that Solo5
        // keeps valid, unchanged, for the whole run.
        unsafe { std::ffi::CStr::from_ptr(info.cmdline) }
            .to_string_lossy()
            .into_owned()
    };
    // argv[0] has no counterpart on Solo5 (the tender takes the image path):
    // use a fixed name so `env::args().skip(1)` are the arguments.
    let words: Vec<std::ffi::CString> = std::iter::once("unikernel")
        .chain(cmdline.split_ascii_whitespace())
        .filter_map(|w| std::ffi::CString::new(w).ok())
        .collect();
    // std keeps the argv pointer for `env::args()`: leak it for the run.
    let words: &'static [std::ffi::CString] = Vec::leak(words);
    let mut argv: Vec<*const c_char> = words.iter().map(|w| w.as_ptr()).collect();
    let argc = argv.len() as c_int;
    argv.push(std::ptr::null());
    let argv: &'static [*const c_char] = Vec::leak(argv);
    static ENVP: [usize; 1] = [0];
    let envp = ENVP.as_ptr().cast::<*const c_char>();

    // --- .init_array (std's argv capture among others) ---
    let mut f = &raw const __init_array_start;
    while f < &raw const __init_array_end {
        // SAFETY: `f` is below the linker's end bound, so it points to an
        // entry of the image's .init_array.
        let init = unsafe { *f };
        // SAFETY: every .init_array entry is an init function with the
        // (argc, argv, envp) signature glibc uses; argv and envp are
        // NUL-terminated arrays that live for the whole run.
        unsafe { init(argc, argv.as_ptr(), envp) };
        // SAFETY: `f` is below the end bound, so `f + 1` is at most the
        // end of the same array.
        f = unsafe { f.add(1) };
    }

    // SAFETY: `main` is rustc's C entry for the bin; argv is NUL-terminated
    // and lives for the whole run.
    unsafe { main(argc, argv.as_ptr()) }
}
