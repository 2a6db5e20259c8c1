//! Checks of a trace in the Chrome trace event format, as mkernel writes it
//! (`Builder::trace`, `MKERNEL_TRACE`): read back with a JSON parser, then
//! task by task, in time order, the events must follow a task's life.

#![allow(dead_code, reason = "each test file uses only part of these helpers")]

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// What a checked trace holds, per task.
#[derive(Debug, Default)]
pub struct Checked {
    /// Run slices per task (`tid`).
    pub runs: BTreeMap<u64, u64>,
    /// The run counts the trace's finish/cancel events give (the task's
    /// `task_stats().runs` when it ended).
    pub stats_runs: BTreeMap<u64, u64>,
    /// Track names.
    pub names: BTreeMap<u64, String>,
    /// `otherData.switches`: `stats().switches` at the end of the run.
    pub switches: u64,
    /// Wake-ups per waker description (`"task 3"`, `"net"`, `"timer"`...).
    pub wakes_by: BTreeMap<String, u64>,
    /// Suspensions per reason (`"yield"`, `"net"`...).
    pub ends: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Life {
    Unborn,
    Runnable,
    Running,
    Waiting,
    /// Its function returned or panicked: only `finish` may follow.
    Returned,
    Done,
}

/// A task's event, reduced to what the check needs.
#[derive(Debug)]
enum Ev {
    Spawn,
    Wake,
    Run { end_us: f64, end: String },
    Finish(u64),
    Cancel(u64),
}

fn order(e: &Ev) -> u8 {
    match e {
        Ev::Spawn => 0,
        Ev::Wake => 1,
        Ev::Run { .. } => 2,
        Ev::Finish(_) | Ev::Cancel(_) => 3,
    }
}

/// Parses `json` and checks it; panics with the first problem found.
pub fn check(json: &str) -> Checked {
    let v: Value = serde_json::from_str(json).expect("the trace is valid JSON");
    let other = &v["otherData"];
    assert_eq!(
        other["dropped"].as_u64(),
        Some(0),
        "the ring overflowed: {other}"
    );
    let mut out = Checked {
        switches: other["switches"].as_u64().expect("otherData.switches"),
        ..Checked::default()
    };
    let events = v["traceEvents"].as_array().expect("traceEvents");
    let mut per_task: HashMap<u64, Vec<(f64, Ev)>> = HashMap::new();
    let mut flow_starts: HashMap<u64, f64> = HashMap::new();
    let mut flow_ends: Vec<(u64, u64, f64)> = Vec::new();
    let mut run_starts: HashMap<u64, Vec<f64>> = HashMap::new();
    for e in events {
        let ph = e["ph"].as_str().expect("ph");
        let tid = e["tid"].as_u64().expect("tid");
        let ts = e["ts"].as_f64().unwrap_or(0.0);
        let cat = e["cat"].as_str().unwrap_or("");
        match (ph, cat) {
            ("M", _) => {
                if e["name"] == "thread_name" && tid != 0 {
                    out.names
                        .insert(tid, e["args"]["name"].as_str().unwrap().to_string());
                }
            }
            ("X", "run") => {
                let dur = e["dur"].as_f64().expect("dur");
                assert!(dur >= 0.0, "negative slice: {e}");
                let end = e["args"]["end"].as_str().expect("end").to_string();
                *out.ends.entry(end.clone()).or_default() += 1;
                run_starts.entry(tid).or_default().push(ts);
                per_task.entry(tid).or_default().push((
                    ts,
                    Ev::Run {
                        end_us: ts + dur,
                        end,
                    },
                ));
            }
            ("X", "device") => assert_eq!(tid, 0, "a device notice off track 0: {e}"),
            ("i", "spawn") => per_task.entry(tid).or_default().push((ts, Ev::Spawn)),
            ("i", "wake") => {
                let by = e["args"]["by"].as_str().expect("by").to_string();
                *out.wakes_by.entry(by).or_default() += 1;
                per_task.entry(tid).or_default().push((ts, Ev::Wake));
            }
            ("i", "end") => {
                let runs = e["args"]["runs"].as_u64().expect("runs");
                let ev = if e["name"] == "finish" {
                    Ev::Finish(runs)
                } else {
                    Ev::Cancel(runs)
                };
                per_task.entry(tid).or_default().push((ts, ev));
            }
            ("s", "wake") => {
                flow_starts.insert(e["id"].as_u64().unwrap(), ts);
            }
            ("f", "wake") => flow_ends.push((e["id"].as_u64().unwrap(), tid, ts)),
            _ => panic!("unexpected event {e}"),
        }
    }
    // Every flow goes from a waker to the start of a run of the woken task,
    // later than the wake-up.
    for (id, tid, ts) in flow_ends {
        let s = flow_starts
            .get(&id)
            .unwrap_or_else(|| panic!("flow {id} has no start"));
        assert!(*s <= ts + 1e-6, "flow {id} ends before it starts");
        assert!(
            run_starts
                .get(&tid)
                .is_some_and(|v| v.iter().any(|&r| (r - ts).abs() < 1e-6)),
            "flow {id} does not end at a run of task {tid}"
        );
    }
    for (tid, mut evs) in per_task {
        evs.sort_by(|a, b| a.0.total_cmp(&b.0).then(order(&a.1).cmp(&order(&b.1))));
        let mut life = Life::Unborn;
        let mut last_end = f64::MIN;
        let mut runs = 0;
        for (ts, ev) in &evs {
            let ctx = || format!("task {tid} at {ts} µs: {ev:?} while {life:?}");
            assert!(*ts + 1e-6 >= last_end, "{}: inside the previous run", ctx());
            life = match (life, ev) {
                (Life::Unborn, Ev::Spawn) => Life::Runnable,
                (Life::Waiting, Ev::Wake) => Life::Runnable,
                (Life::Runnable, Ev::Run { end_us, end }) => {
                    runs += 1;
                    last_end = *end_us;
                    match end.as_str() {
                        "yield" => Life::Runnable,
                        "return" | "panic" => Life::Returned,
                        _ => Life::Waiting,
                    }
                }
                (Life::Returned, Ev::Finish(n)) => {
                    out.stats_runs.insert(tid, *n);
                    Life::Done
                }
                (Life::Runnable | Life::Waiting, Ev::Cancel(n)) => {
                    out.stats_runs.insert(tid, *n);
                    Life::Done
                }
                _ => panic!("{}: out of order", ctx()),
            };
            let _ = Life::Running;
        }
        out.runs.insert(tid, runs);
    }
    out
}
