//! Stack overflows reported as such: the canary message, and the handler
//! that the OS seam installs (hosted: a signal handler for faults in a
//! task's guard page; Solo5 has no guard pages, only canaries).

use super::scheduler;

/// Message for an overflow found by the canary check.
pub(crate) fn canary_message(task: impl core::fmt::Display, stack_size: usize) -> String {
    format!(
        "mkernel: {task} overflowed its stack of {} KiB; \
         give tasks more with mkernel::Builder::stack_size",
        stack_size / 1024
    )
}

/// Installs the overflow handler (once per process) for this thread.
pub(crate) fn install() {
    crate::sys::overflow::install(scheduler::running_for_signal);
}
