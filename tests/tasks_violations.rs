//! Rule violations (rules 1, 2, 6): the run stops with a `Violation`
//! payload, the message says what and where, and the thread can run again.
//! Also: a stack overflow in a task is reported naming the task.

use mkernel::{Error, Promise, Resource, Violation, run, spawn, yield_now};
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::rc::Rc;

const CHILD: &str = "MKERNEL_TEST_CHILD";

/// Runs `f` expecting the run to stop with a violation; returns it.
fn violation_of(f: impl FnOnce() + 'static) -> Violation {
    let r = catch_unwind(AssertUnwindSafe(|| run((), move |()| f())));
    let payload = r.expect_err("the run must stop with a violation");
    let v = *payload
        .downcast_ref::<Violation>()
        .unwrap_or_else(|| panic!("payload is not a Violation"));
    // A new run works on the same thread afterwards.
    let again = run((), |()| {
        let p = spawn(|| {
            yield_now();
            40
        });
        p.join().unwrap() + 2
    });
    assert_eq!(again, 42);
    v
}

/// Re-runs this test binary for test `name` only, with `CHILD=name`; returns
/// (success, stderr).
fn in_child(name: &str) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    // A hang is a failure too (say a wait that spins for ever), not a
    // timing assertion: the children end within a second.
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut stderr = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    if status.is_none() {
        stderr.push_str("\n(the child still ran after 60 s: killed)");
    }
    (status.is_some_and(|s| s.success()), stderr)
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// Runs test `name` in a child process ([`in_child`]) and asserts that it
/// dies, and that its stderr holds `what` and the spawn site the report
/// must name: the line of this file marked `// site-of: MARK` (the spawn
/// itself, or the line just above it). Returns the stderr for further
/// checks.
fn child_dies_reporting(name: &str, what: &str, mark: &str) -> String {
    let (ok, stderr) = in_child(name);
    assert!(!ok, "the process must die:\n{stderr}");
    let source = include_str!("tasks_violations.rs");
    let marker = format!("// site-of: {mark}");
    let (i, text) = source
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim_end().ends_with(&marker))
        .unwrap_or_else(|| panic!("no line marked {marker:?}"));
    // A marker alone on its line names the spawn on the next line.
    let line = if text.trim_start().starts_with("//") {
        i + 2
    } else {
        i + 1
    };
    let site = format!("tests/tasks_violations.rs:{line}");
    assert!(
        stderr.contains(what) && stderr.contains(&site),
        "stderr should report {what:?} for the task spawned at {site}:\n{stderr}"
    );
    stderr
}

struct D(Rc<Cell<u32>>);
impl Drop for D {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn main_returning_with_a_child_is_still_has_children() {
    assert_eq!(
        violation_of(|| {
            let _forgotten = spawn(|| ());
        }),
        Violation::StillHasChildren
    );
}

#[test]
fn main_returning_with_a_finished_unjoined_child_is_still_has_children() {
    assert_eq!(
        violation_of(|| {
            let p = spawn(|| ());
            yield_now();
            assert!(p.is_finished());
            std::mem::forget(p);
        }),
        Violation::StillHasChildren
    );
}

#[test]
fn a_child_returning_with_a_grandchild_stops_the_whole_run() {
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    assert_eq!(
        violation_of(move || {
            let d2 = d.clone();
            let sibling = spawn(move || {
                let _d = D(d2);
                loop {
                    yield_now()
                }
            });
            let p = spawn(|| {
                let _g = spawn(|| {
                    loop {
                        yield_now()
                    }
                });
            });
            let _ = p.join();
            let _ = sibling.join();
            unreachable!("the run stops at the violation");
        }),
        Violation::StillHasChildren
    );
    assert_eq!(drops.get(), 1, "the other tasks were unwound");
}

#[test]
fn still_has_children_message_names_the_spawn_site() {
    const NAME: &str = "still_has_children_message_names_the_spawn_site";
    if is_child(NAME) {
        run((), |()| {
            let _p = spawn(|| ()); // site-of: still_has_children
        });
        return;
    }
    child_dies_reporting(NAME, "StillHasChildren", "still_has_children");
}

#[test]
fn joining_a_siblings_promise_is_not_a_child() {
    assert_eq!(
        violation_of(|| {
            let p = spawn(|| 1);
            let slot = Rc::new(RefCell::new(Some(p)));
            let s = slot.clone();
            let thief = spawn(move || {
                let p = s.borrow_mut().take().unwrap();
                let _ = p.join();
            });
            let _ = thief.join();
        }),
        Violation::NotAChild
    );
}

#[test]
fn joining_a_grandchild_is_not_a_child() {
    assert_eq!(
        violation_of(|| {
            // The child stays alive, so that its child is legitimately pending.
            let slot = Rc::new(RefCell::new(None));
            let s = slot.clone();
            let child = spawn(move || {
                let g = spawn(|| 1);
                *s.borrow_mut() = Some(g);
                loop {
                    yield_now()
                }
            });
            yield_now();
            let g: Promise<i32> = slot.borrow_mut().take().unwrap();
            let _ = g.join();
            child.cancel();
        }),
        Violation::NotAChild
    );
}

#[test]
fn cancelling_from_a_non_parent_is_not_a_child() {
    assert_eq!(
        violation_of(|| {
            let victim = Rc::new(spawn(|| {
                loop {
                    yield_now()
                }
            }));
            let v = victim.clone();
            let other = spawn(move || v.cancel());
            let _ = other.join();
        }),
        Violation::NotAChild
    );
}

#[test]
fn a_violation_caught_inside_the_task_still_stops_the_run() {
    let reached = Rc::new(Cell::new(false));
    let r = reached.clone();
    assert_eq!(
        violation_of(move || {
            let p = spawn(|| 1);
            let slot = Rc::new(RefCell::new(Some(p)));
            let s = slot.clone();
            let thief = spawn(move || {
                let p = s.borrow_mut().take().unwrap();
                let caught = catch_unwind(AssertUnwindSafe(|| p.join()));
                assert!(caught.is_err());
            });
            let _ = thief.join();
            for _ in 0..10 {
                yield_now();
            }
            r.set(true);
        }),
        Violation::NotAChild
    );
    assert!(!reached.get(), "the run stopped");
}

#[test]
fn returning_with_an_owned_resource_is_resource_leaked_after_finalising() {
    let finalised = Rc::new(Cell::new(0));
    let f = finalised.clone();
    assert_eq!(
        violation_of(move || {
            let p = spawn(move || {
                let r = Resource::new(5u32, move |v| f.set(f.get() + v));
                r.own();
            });
            let _ = p.join();
        }),
        Violation::ResourceLeaked
    );
    assert_eq!(finalised.get(), 5, "the finaliser ran once");
}

#[test]
fn check_from_a_non_owner_is_not_owner() {
    assert_eq!(
        violation_of(|| {
            let r = Resource::new((), |()| ());
            r.own();
            let r2 = r.clone();
            let p = spawn(move || r2.check());
            let _ = p.join();
            r.release();
        }),
        Violation::NotOwner
    );
}

#[test]
fn check_of_an_unowned_resource_is_not_owner() {
    assert_eq!(
        violation_of(|| {
            let r = Resource::new((), |()| ());
            r.check();
        }),
        Violation::NotOwner
    );
}

#[test]
fn violations_are_displayed_and_compared() {
    assert_ne!(Violation::NotAChild, Violation::NotOwner);
    assert!(Violation::StillHasChildren.to_string().contains("child"));
    let e: &dyn std::error::Error = &Violation::ResourceLeaked;
    assert!(e.to_string().contains("resource"));
    let e: Box<dyn std::error::Error> = Box::new(Error::Cancelled);
    assert_eq!(e.to_string(), "the task was cancelled");
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = std::hint::black_box([n as u8; 1024]);
    if n == 0 {
        0
    } else {
        buf[(n % 1024) as usize] as u64 + recurse(n - 1) + std::hint::black_box(1)
    }
}

#[test]
fn a_stack_overflow_in_a_task_is_reported_naming_the_task() {
    const NAME: &str = "a_stack_overflow_in_a_task_is_reported_naming_the_task";
    if is_child(NAME) {
        run((), |()| {
            let p = spawn(|| recurse(1 << 20)); // site-of: overflow
            let _ = p.join();
        });
        return;
    }
    let stderr = child_dies_reporting(NAME, "overflowed its stack", "overflow");
    assert!(
        stderr.contains("task 2"),
        "the report names task 2:\n{stderr}"
    );
}

/// Whether this kernel has lightweight guard regions (`MADV_GUARD_INSTALL`,
/// Linux 6.13), which let every task stack have a guard page.
fn kernel_has_guard_regions() -> bool {
    const MADV_GUARD_INSTALL: libc::c_int = 102;
    // SAFETY: a fresh anonymous private mapping at an address of the
    // kernel's choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: `p` is the page just mapped, which nothing else uses; a guard
    // region only makes it inaccessible.
    let ok = unsafe { libc::madvise(p, 4096, MADV_GUARD_INSTALL) } == 0;
    // SAFETY: unmaps exactly that page, which nothing refers to any more.
    unsafe { libc::munmap(p, 4096) };
    ok
}

/// With lightweight guard regions, the stacks beyond `MAX_GUARDED` have a
/// guard page too: all live stacks count as guarded, and an overflow in
/// the last of 17,384 live tasks is reported naming it (with a canary
/// alone, a deep overflow runs through the neighbouring stacks and dies of
/// a bare SIGSEGV before any check).
#[test]
fn a_stack_overflow_beyond_max_guarded_tasks_is_reported_too() {
    const NAME: &str = "a_stack_overflow_beyond_max_guarded_tasks_is_reported_too";
    if !kernel_has_guard_regions() {
        // Straight to stderr: the harness would hide an `eprintln!`.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: a_stack_overflow_beyond_max_guarded_tasks_is_reported_too: this \
              kernel has no MADV_GUARD_INSTALL (Linux 6.13+), so only MAX_GUARDED stacks \
              get a guard page and the others a canary\n",
        );
        return;
    }
    if is_child(NAME) {
        let n = mkernel::MAX_GUARDED + 1000;
        run((), move |()| {
            // n tasks that yield until stopped: after one yield of this
            // task, each has run once and holds its stack.
            let stop = Rc::new(Cell::new(false));
            let live: Vec<_> = (0..n)
                .map(|_| {
                    let stop = stop.clone();
                    spawn(move || {
                        while !stop.get() {
                            yield_now();
                        }
                    })
                })
                .collect();
            yield_now();
            let stacks = mkernel::stats().stacks;
            eprintln!("stacks: {stacks:?}");
            assert_eq!(stacks.guarded_in_use, stacks.in_use, "unguarded stacks");
            assert!(stacks.in_use > n);
            let p = spawn(|| recurse(1 << 20)); // site-of: overflow beyond MAX_GUARDED
            let _ = p.join();
            stop.set(true);
            mkernel::join_all(live);
        });
        return;
    }
    child_dies_reporting(NAME, "overflowed its stack", "overflow beyond MAX_GUARDED");
}

/// A destructor of a cancelled task cannot wait: nothing else runs while
/// `cancel` unwinds it, so a wait returns at once. One that keeps trying,
/// here `Mutex::lock` on a mutex the parent holds (a loop around a wait),
/// is reported naming the task and the process aborts, instead of spinning
/// for ever.
#[test]
fn a_destructor_that_keeps_waiting_while_cancelled_is_reported() {
    const NAME: &str = "a_destructor_that_keeps_waiting_while_cancelled_is_reported";
    if is_child(NAME) {
        use mkernel::sync::Mutex;
        struct LockOnDrop(Rc<Mutex<u32>>);
        impl Drop for LockOnDrop {
            fn drop(&mut self) {
                let _g = self.0.lock();
            }
        }
        run((), |()| {
            let m = Rc::new(Mutex::new(0));
            let held = m.lock();
            let m2 = m.clone();
            // site-of: destructor that keeps waiting
            let p = spawn(move || {
                let _d = LockOnDrop(m2.clone());
                let _g = m2.lock(); // waits: the parent holds it
            });
            yield_now();
            p.cancel();
            drop(held);
        });
        return;
    }
    child_dies_reporting(
        NAME,
        "keeps waiting while it is being cancelled",
        "destructor that keeps waiting",
    );
}

#[test]
fn an_overflow_of_the_main_task_names_the_main_task() {
    const NAME: &str = "an_overflow_of_the_main_task_names_the_main_task";
    if is_child(NAME) {
        run((), |()| recurse(1 << 20));
        return;
    }
    let (ok, stderr) = in_child(NAME);
    assert!(!ok, "the process must die:\n{stderr}");
    assert!(
        stderr.contains("the main task (task 1) overflowed its stack"),
        "names the main task, not the run loop's line:\n{stderr}"
    );
    assert!(!stderr.contains("run_loop.rs"), "{stderr}");
}

#[test]
fn a_destructor_that_panics_while_cancelled_is_reported_naming_the_task() {
    const NAME: &str = "a_destructor_that_panics_while_cancelled_is_reported_naming_the_task";
    if is_child(NAME) {
        struct PanicOnDrop;
        impl Drop for PanicOnDrop {
            fn drop(&mut self) {
                panic!("destructor failed");
            }
        }
        run((), |()| {
            // site-of: destructor that panics
            let p = spawn(|| {
                let _d = PanicOnDrop;
                loop {
                    yield_now();
                }
            });
            yield_now();
            p.cancel();
        });
        return;
    }
    let stderr = child_dies_reporting(
        NAME,
        "panicked in a destructor while it was being cancelled",
        "destructor that panics",
    );
    assert!(stderr.contains("task 2"), "{stderr}");
}
