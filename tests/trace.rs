//! Scheduler traces (`Builder::trace`, `MKERNEL_TRACE`, `--mkernel:trace`):
//! read back with a JSON parser and checked task by task (see
//! `trace_util::check`): every task's events are well nested, every wake-up
//! precedes the run it causes, and the runs each task's track shows are
//! those `task_stats` counted.

#[path = "solo5_util/mod.rs"]
mod util;

mod trace_util;

#[allow(
    dead_code,
    reason = "the test uses the files, not the demo's archive writer"
)]
#[path = "../examples/demo/site.rs"]
mod demo_site;

use mkernel::sync::{Condition, Mutex};
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

fn temp(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mk-trace-{tag}-{}.json", std::process::id()))
}

/// What `task_stats` says of the calling task now: at the end of its
/// function, its run count is final.
fn my_runs() -> u64 {
    mkernel::task_stats(mkernel::current_task()).unwrap().runs
}

#[test]
fn a_trace_follows_every_task_and_counts_the_runs_task_stats_counts() {
    let path = temp("tasks");
    let (counted, switches) = mkernel::Builder::new()
        .trace(mkernel::Trace::file(&path))
        .run((), |()| {
            let st = Rc::new((Mutex::new(0u32), Condition::new()));
            let mut ps = Vec::new();
            for i in 0..4u32 {
                let st = st.clone();
                ps.push(mkernel::spawn_named(format!("worker {i}"), move || {
                    for _ in 0..3 {
                        mkernel::yield_now();
                    }
                    // The last wakes first, so that it waits on the condition.
                    mkernel::sleep(Duration::from_millis(u64::from(4 - i)));
                    let (m, c) = &*st;
                    let mut g = m.lock();
                    while *g != i {
                        g = c.wait(g);
                    }
                    *g += 1;
                    c.broadcast();
                    drop(g);
                    (mkernel::current_task().as_u64(), my_runs())
                }));
            }
            let stuck = mkernel::spawn_named("cancelled", || {
                mkernel::sleep(Duration::from_secs(60));
            });
            let never = mkernel::spawn(|| ());
            never.cancel();
            let mut counted: Vec<(u64, u64)> = mkernel::join_all(ps)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            stuck.cancel();
            counted.push((1, my_runs()));
            (counted, mkernel::stats().switches)
        });
    let json = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let c = trace_util::check(&json);
    for (task, runs) in &counted {
        assert_eq!(c.runs[task], *runs, "runs of task {task}");
        assert_eq!(c.stats_runs[task], *runs, "task {task}'s end event");
    }
    assert_eq!(c.runs.values().sum::<u64>(), c.switches);
    // `stats()` read inside main, before its last run ended: the same.
    assert_eq!(c.switches, switches);
    assert_eq!(c.names[&2], "worker 0 (task 2)");
    assert_eq!(c.names[&1], "main (task 1)");
    for reason in ["yield", "sleep", "sync", "join", "return"] {
        assert!(
            c.ends.contains_key(reason),
            "no run ended by {reason}: {:?}",
            c.ends
        );
    }
    assert!(c.wakes_by.contains_key("timer"), "{:?}", c.wakes_by);
    assert!(
        c.wakes_by.keys().any(|k| k.starts_with("task ")),
        "{:?}",
        c.wakes_by
    );
    // The unstarted task and the sleeper were cancelled.
    assert_eq!(c.runs.len(), 7);
    assert_eq!(c.stats_runs.len(), 7);
}

#[test]
fn a_full_ring_keeps_the_latest_events_and_says_how_many_it_lost() {
    let path = temp("ring");
    mkernel::Builder::new()
        .trace(mkernel::Trace::file(&path).capacity(100))
        .run((), |()| {
            for _ in 0..1000 {
                mkernel::yield_now();
            }
        });
    let json = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["otherData"]["events"], 2002 + 1);
    assert_eq!(v["otherData"]["dropped"], 2003 - 100);
    let runs = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "run")
        .count();
    assert!((45..=51).contains(&runs), "{runs}");
}

/// The demo (httpd and 32 clients on an in-memory link), traced through
/// the environment as any mkernel program can be.
#[test]
fn the_demo_traced_through_mkernel_trace_is_well_formed() {
    let path = temp("demo");
    let out = Command::new(util::example_binary("demo"))
        .env("MKERNEL_TRACE", &path)
        .env("MKERNEL_TRACE_EVENTS", (8 << 20).to_string())
        .env("DEMO_WINDOW_MS", "500")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let c = trace_util::check(&json);
    assert_eq!(
        c.runs, c.stats_runs,
        "the runs on each track, and task_stats'"
    );
    assert_eq!(c.runs.values().sum::<u64>(), c.switches);
    let clients = c
        .names
        .values()
        .filter(|n| n.starts_with("client "))
        .count();
    assert_eq!(clients, 32, "{:?}", c.names);
    assert!(
        c.names.values().any(|n| n.starts_with("httpd server")),
        "{:?}",
        c.names
    );
    // Frames on the link wake the stacks' receivers.
    assert!(c.wakes_by.contains_key("net"), "{:?}", c.wakes_by);
    assert!(c.ends.contains_key("net"), "{:?}", c.ends);
}

/// `--mkernel:trace` at the start of the application's arguments: the
/// trace goes to the console between markers, and the program does not
/// see the option.
#[test]
fn the_trace_option_prints_the_trace_between_markers() {
    let out = Command::new(util::example_binary("cmdline"))
        .args(["--", "--mkernel:trace", "a", "b"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let plain = Command::new(util::example_binary("cmdline"))
        .args(["--", "a", "b"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, plain.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    let begin =
        err.find(mkernel::TRACE_BEGIN).expect("the begin marker") + mkernel::TRACE_BEGIN.len();
    let end = err.find(mkernel::TRACE_END).expect("the end marker");
    let c = trace_util::check(err[begin..end].trim());
    assert_eq!(c.runs.values().sum::<u64>(), c.switches);
    assert!(plain.stderr.is_empty());
}

/// The demo's site image, made with `tar` from the files the demo checks
/// its responses against.
fn demo_site_image() -> util::Disk {
    let dir = std::env::temp_dir().join(format!("mk-trace-site-{}", std::process::id()));
    for (name, data) in demo_site::files() {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let out = Command::new("tar")
        .args(["--format=ustar", "-cf", "-", "-C"])
        .arg(&dir)
        .arg(".")
        .output()
        .expect("tar");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "tar failed");
    util::Disk::with("trace-demo-site", &out.stdout)
}

/// The demo (httpd and 32 clients on an in-memory link inside the
/// unikernel, its site on the block device `site`) under `solo5-spt`, with
/// `--mkernel:trace`: the trace on the console passes the same checks as
/// the hosted one.
#[test]
fn the_demo_under_spt_prints_a_well_formed_trace_on_the_console() {
    if let Some(why) = util::tool_check::missing_tool(&["tar"]) {
        util::say_skipped(&why);
        return;
    }
    let site = demo_site_image();
    let image = util::build_image("spt", "demo");
    let tender = util::solo5_root().join("tenders/spt/solo5-spt");
    let spt = util::run_with_timeout(
        Command::new(&tender)
            .arg(site.flag("site"))
            .arg(&image)
            .args(["--mkernel:trace", "--window-ms=100"]),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&spt.stdout);
    let console = stdout.clone().into_owned() + &String::from_utf8_lossy(&spt.stderr);
    assert!(spt.status.success(), "{console}");
    let begin = console
        .find(mkernel::TRACE_BEGIN)
        .expect("the begin marker")
        + mkernel::TRACE_BEGIN.len();
    let end = console.find(mkernel::TRACE_END).expect("the end marker");
    // The demo's own report, outside the trace: every response right.
    let said = util::app_output(&stdout);
    assert!(
        said.contains(" 0 wrong responses") && !said.contains(" 0 requests,"),
        "{said}"
    );
    let c = trace_util::check(console[begin..end].trim());
    assert_eq!(
        c.runs, c.stats_runs,
        "the runs on each track, and task_stats'"
    );
    assert_eq!(c.runs.values().sum::<u64>(), c.switches);
    let clients = c
        .names
        .values()
        .filter(|n| n.starts_with("client "))
        .count();
    assert_eq!(clients, 32, "{:?}", c.names);
    assert!(
        c.names.values().any(|n| n.starts_with("httpd server")),
        "{:?}",
        c.names
    );
    assert!(c.wakes_by.contains_key("net"), "{:?}", c.wakes_by);
    assert!(c.ends.contains_key("net"), "{:?}", c.ends);
    // httpd reads the tender's block device with atomic reads (they do not
    // wait for idleness, see examples/httpd.rs "Reads"): no task suspends
    // for block I/O.
    assert!(!c.ends.contains_key("block"), "{:?}", c.ends);
}
