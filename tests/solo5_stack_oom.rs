//! Issue 18 item 11: a unikernel whose tasks exhaust its memory stops with
//! a message that says what to change (the tender's `--mem`, the stack
//! size), not a bare `memory allocation failed`. `examples/stack_exhaust`
//! spawns sleeping tasks until the stacks no longer fit in
//! `solo5-spt --mem=16`.

#[path = "solo5_util/mod.rs"]
mod util;

#[test]
fn spt_stack_exhaustion_names_mem_and_the_stack_size() {
    let out = util::Target::Spt.run(None, "stack_exhaust", &["--mem=16".into()], &[]);
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the run cannot succeed:\n{console}");
    assert!(
        console.contains("mkernel: out of memory for task stacks"),
        "no stack message in:\n{console}"
    );
    assert!(
        console.contains("--mem=MB"),
        "the message does not name --mem:\n{console}"
    );
    assert!(
        console.contains("KiB each") && console.contains("Builder::stack_size"),
        "the message does not name the stack size:\n{console}"
    );
    // It got somewhere first: tasks ran before the memory ran out.
    assert!(
        console.contains("1000 tasks") || console.contains("in use"),
        "{console}"
    );
    assert!(
        !console.contains("memory allocation of"),
        "a bare allocation failure instead:\n{console}"
    );
}
