//! Issue 18 item 6: a stack overflow under Solo5 no longer kills the tender
//! silently. Solo5 gives no guard pages, so `examples/overflow`'s
//! unbounded recursion runs through the memory below its stack until it
//! faults; the `solo5-spt` that cargo-mkernel builds (a patched copy, see
//! `cargo-mkernel/src/solo5.rs`) reports that fault on the console with its
//! address and likely cause, and exits with 139. Before, the tender died of
//! `SIGSEGV` (exit 139 from the shell's view) with nothing on the console.
//! (hvt: Solo5's own trap handler prints the fault; it needs real KVM, which
//! this machine's nested KVM does not run, see `tests/solo5_hvt.rs`.)

#[path = "solo5_util/mod.rs"]
mod util;

use std::os::unix::process::ExitStatusExt;

#[test]
fn spt_reports_a_task_stack_overflow_on_the_console() {
    let out = util::Target::Spt.run(None, "overflow", &[], &[]);
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        console.contains("recursing"),
        "the task never started:\n{console}"
    );
    assert_eq!(
        (out.status.code(), out.status.signal()),
        (Some(139), None),
        "the tender must exit 139 after its report, not die of the signal:\n{console}"
    );
    let line = console
        .lines()
        .find(|l| l.starts_with("solo5-spt: the unikernel faulted: SIGSEGV at address 0x"))
        .unwrap_or_else(|| panic!("no fault report on the console:\n{console}"));
    assert!(
        line.contains(", ip 0x") && line.contains(", sp 0x"),
        "{line}"
    );
    assert!(
        console.contains("stack overflow") && console.contains("Builder::stack_size"),
        "the report does not name the likely cause:\n{console}"
    );
}
