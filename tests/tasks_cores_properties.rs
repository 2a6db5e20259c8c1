//! Property test over several cores: random trees mixing `spawn` and
//! `call` (with yields, joins, cancellations, panics, nesting) on 2 and 4
//! cores. Checked: the run ends (no deadlock); every task runs once and no
//! task outlives its parent; every closure is dropped once and every stack
//! unwound at most once; joins see their child's value (or its panic, or
//! `Cancelled` after a cancel, which is synchronous: the child and its
//! descendants have ended when it returns, wherever they ran); no stack or
//! task record is left on any core.

use mkernel::{Builder, Error, Promise, call, spawn, yield_now};
use proptest::collection::vec;
use proptest::prelude::*;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
enum Op {
    Spawn(Node),
    Call(Node),
    Yield,
    Join(usize),
    Cancel(usize),
    Panic,
}

#[derive(Clone, Debug)]
struct Node {
    ops: Vec<Op>,
}

impl Node {
    fn panics(&self) -> bool {
        self.ops.iter().any(|o| matches!(o, Op::Panic))
    }
}

fn leaf_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Yield),
        3 => any::<usize>().prop_map(Op::Join),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => Just(Op::Panic),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = vec(leaf_op(), 0..5).prop_map(|ops| Node { ops });
    leaf.prop_recursive(4, 40, 6, |inner| {
        vec(
            prop_oneof![
                3 => leaf_op(),
                1 => inner.clone().prop_map(Op::Spawn),
                1 => inner.prop_map(Op::Call),
            ],
            0..7,
        )
        .prop_map(|ops| Node { ops })
    })
}

#[derive(Default)]
struct World {
    /// Per task: closure drops, stack unwinds (or ends), alive, started.
    closure_drops: Vec<u32>,
    stack_drops: Vec<u32>,
    alive: Vec<bool>,
    children: Vec<Vec<usize>>,
    errors: Vec<String>,
}

type W = Arc<Mutex<World>>;

fn world(w: &W) -> std::sync::MutexGuard<'_, World> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl World {
    fn new_task(&mut self) -> usize {
        self.closure_drops.push(0);
        self.stack_drops.push(0);
        self.alive.push(false);
        self.children.push(Vec::new());
        self.alive.len() - 1
    }
}

/// Captured by a task's closure: dropped once, run or not.
struct Token(usize, W);
impl Drop for Token {
    fn drop(&mut self) {
        world(&self.1).closure_drops[self.0] += 1;
    }
}

/// Lives on a started task's stack: marks it alive; when it goes, every
/// child of the task must be gone already.
struct Alive(usize, W);
impl Alive {
    fn new(id: usize, w: &W) -> Alive {
        let mut wm = world(w);
        if wm.alive[id] || wm.stack_drops[id] > 0 {
            wm.errors.push(format!("task {id} started twice"));
        }
        wm.alive[id] = true;
        Alive(id, w.clone())
    }
}
impl Drop for Alive {
    fn drop(&mut self) {
        let mut w = world(&self.1);
        let id = self.0;
        for c in w.children[id].clone() {
            if w.alive[c] {
                w.errors.push(format!("task {c} outlives its parent {id}"));
            }
        }
        w.alive[id] = false;
        w.stack_drops[id] += 1;
    }
}

struct Marker;

fn exec(id: usize, node: &Node, w: &W) -> usize {
    let _alive = Alive::new(id, w);
    let mut pending: Vec<(usize, bool, Promise<usize>)> = Vec::new();
    let err = |msg: String| world(w).errors.push(msg);
    for op in &node.ops {
        match op {
            Op::Spawn(child) | Op::Call(child) => {
                let cid = {
                    let mut wm = world(w);
                    let cid = wm.new_task();
                    wm.children[id].push(cid);
                    cid
                };
                let token = Token(cid, w.clone());
                let (node, w2) = (child.clone(), w.clone());
                let panics = child.panics();
                let body = move || {
                    let _t = token;
                    exec(cid, &node, &w2)
                };
                let p = if matches!(op, Op::Call(_)) {
                    call(body)
                } else {
                    spawn(body)
                };
                pending.push((cid, panics, p));
            }
            Op::Yield => yield_now(),
            Op::Join(i) if !pending.is_empty() => {
                let n = pending.len();
                let (cid, panics, p) = pending.remove(i % n);
                match (p.join(), panics) {
                    (Ok(v), false) if v == cid => {}
                    (Err(Error::Panicked(pl)), true) if pl.is::<Marker>() => {}
                    (r, _) => err(format!("join of {cid} (panics: {panics}) gave {r:?}")),
                }
            }
            Op::Cancel(i) if !pending.is_empty() => {
                let n = pending.len();
                let (cid, _, p) = pending.remove(i % n);
                p.cancel();
                if !p.is_finished() {
                    err(format!("task {cid} not finished after cancel"));
                }
                let (alive, drops) = {
                    let wm = world(w);
                    (wm.alive[cid], wm.closure_drops[cid])
                };
                if alive {
                    err(format!("task {cid} alive after cancel"));
                }
                if drops != 1 {
                    err(format!(
                        "task {cid}: closure dropped {drops} times after cancel"
                    ));
                }
                if !matches!(p.join(), Err(Error::Cancelled)) {
                    err(format!("task {cid}: join after cancel is not Cancelled"));
                }
            }
            Op::Join(_) | Op::Cancel(_) => {}
            Op::Panic => std::panic::panic_any(Marker),
        }
    }
    for (k, (cid, panics, p)) in pending.into_iter().enumerate() {
        if k % 2 == 0 {
            p.cancel();
        } else {
            match (p.join(), panics) {
                (Ok(v), false) if v == cid => {}
                (Err(Error::Panicked(_)), true) => {}
                (r, _) => err(format!("final join of {cid} gave {r:?}")),
            }
        }
    }
    id
}

fn quiet_markers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Marker>() {
                prev(info)
            }
        }));
    });
}

fn check_tree(mut root: Node, cores: usize, quanta: u32, seed: u64) -> Result<(), TestCaseError> {
    quiet_markers();
    root.ops.retain(|o| !matches!(o, Op::Panic)); // main does not fail
    let w: W = Arc::new(Mutex::new(World::default()));
    let w2 = w.clone();
    let per_core = Builder::new()
        .cores(cores)
        .quanta(quanta)
        .seed(seed)
        .stack_size(32 * 1024)
        .run((), move |()| {
            let id = world(&w2).new_task();
            exec(id, &root, &w2);
            let s = mkernel::stats();
            let first = (0, s.stacks.in_use, s.live_tasks);
            // What is left on the other cores: item i of `parallel` runs on
            // core i (item 0 here, as a child of main: skipped).
            let mut per_core: Vec<_> = mkernel::parallel(
                |_| {
                    let s = mkernel::stats();
                    (mkernel::current_core(), s.stacks.in_use, s.live_tasks)
                },
                vec![(); cores],
            );
            per_core[0] = Ok(first);
            per_core
        });
    for (i, r) in per_core.into_iter().enumerate() {
        let (core, stacks, live) = r.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(core, i);
        // Only main on the first core, only the asking task on another.
        prop_assert_eq!(stacks, 1, "stacks in use on core {} at the end", i);
        prop_assert_eq!(live, 1, "task records alive on core {} at the end", i);
    }
    let w = world(&w);
    prop_assert_eq!(&w.errors, &Vec::<String>::new());
    prop_assert!(w.alive.iter().all(|a| !a), "every task ended");
    for (id, &d) in w.closure_drops.iter().enumerate().skip(1) {
        prop_assert_eq!(d, 1, "closure of task {} dropped {} times", id, d);
    }
    for (id, &d) in w.stack_drops.iter().enumerate() {
        prop_assert!(d <= 1, "stack of task {} unwound {} times", id, d);
    }
    prop_assert_eq!(w.stack_drops[0], 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn random_spawn_call_trees_on_two_cores(
        root in node(),
        quanta in prop_oneof![Just(1u32), Just(2), Just(u32::MAX)],
        seed in any::<u64>(),
    ) {
        check_tree(root, 2, quanta, seed)?;
    }

    #[test]
    fn random_spawn_call_trees_on_four_cores(
        root in node(),
        quanta in prop_oneof![Just(1u32), Just(2), Just(u32::MAX)],
        seed in any::<u64>(),
    ) {
        check_tree(root, 4, quanta, seed)?;
    }
}

/// A fixed deep tree alternating spawn and call, so that depth 4 and
/// cancellations crossing cores are certainly exercised.
#[test]
fn a_deep_tree_alternating_spawn_and_call() {
    fn level(d: u32) -> Node {
        let mut ops = vec![Op::Yield];
        if d > 0 {
            ops.push(Op::Call(level(d - 1)));
            ops.push(Op::Spawn(level(d - 1)));
            ops.push(Op::Call(Node {
                ops: vec![Op::Yield, Op::Yield, Op::Panic],
            }));
            ops.push(Op::Yield);
            ops.push(Op::Cancel(0));
            ops.push(Op::Join(0));
        }
        ops.push(Op::Yield);
        Node { ops }
    }
    for cores in [2, 4] {
        for quanta in [1, 3, u32::MAX] {
            check_tree(level(4), cores, quanta, 7).unwrap();
        }
    }
}
