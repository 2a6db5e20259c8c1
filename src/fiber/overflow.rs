//! Stack overflows reported as such: the canary message, and the handler
//! that the OS seam installs (hosted: a signal handler for faults in a
//! task's guard page; Solo5 has no guard pages, only canaries).

use super::scheduler;
use core::panic::Location;

/// Message for an overflow found by the canary check.
pub(crate) fn canary_message(task: u64, site: &Location<'_>, stack_size: usize) -> String {
    format!(
        "mkernel: task {task} (spawned at {site}) overflowed its stack of {} KiB; \
         give tasks more with mkernel::Builder::stack_size",
        stack_size / 1024
    )
}

/// Installs the overflow handler (once per process) for this thread.
pub(crate) fn install() {
    crate::sys::overflow::install(scheduler::running_for_signal);
}
