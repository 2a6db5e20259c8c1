//! Property test: random task trees (spawn, yield, join, cancel, panic,
//! nested) under random quanta and seeds. Checked: the run ends; no task
//! outlives its parent; every destructor runs exactly once; join results are
//! what the tree says; no stack or task record is leaked.

use mkernel::{Builder, Error, Promise, spawn, yield_now};
use proptest::collection::vec;
use proptest::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Clone, Debug)]
enum Op {
    Spawn(Node),
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
    fn size(&self) -> usize {
        1 + self
            .ops
            .iter()
            .map(|o| if let Op::Spawn(n) = o { n.size() } else { 0 })
            .sum::<usize>()
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
    leaf.prop_recursive(4, 48, 6, |inner| {
        vec(
            prop_oneof![3 => leaf_op(), 2 => inner.prop_map(Op::Spawn)],
            0..7,
        )
        .prop_map(|ops| Node { ops })
    })
}

#[derive(Default)]
struct World {
    /// Per task id: spawned closures dropped, stack guards dropped, alive.
    closure_drops: Vec<u32>,
    stack_drops: Vec<u32>,
    alive: Vec<bool>,
    children: Vec<Vec<usize>>,
    errors: Vec<String>,
}

type W = Rc<RefCell<World>>;

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
        self.1.borrow_mut().closure_drops[self.0] += 1;
    }
}

/// Lives on a started task's stack: marks it alive; when it goes, every
/// child of the task must be gone already.
struct Alive(usize, W);
impl Alive {
    fn new(id: usize, w: &W) -> Alive {
        let mut wm = w.borrow_mut();
        if wm.alive[id] {
            wm.errors.push(format!("task {id} started twice"));
        }
        wm.alive[id] = true;
        Alive(id, w.clone())
    }
}
impl Drop for Alive {
    fn drop(&mut self) {
        let mut w = self.1.borrow_mut();
        let id = self.0;
        for &c in &w.children[id].clone() {
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
    let err = |msg: String| w.borrow_mut().errors.push(msg);
    for op in &node.ops {
        match op {
            Op::Spawn(child) => {
                let cid = {
                    let mut wm = w.borrow_mut();
                    let cid = wm.new_task();
                    wm.children[id].push(cid);
                    cid
                };
                let token = Token(cid, w.clone());
                let (child, w2) = (child.clone(), w.clone());
                let panics = child.panics();
                let p = spawn(move || {
                    let _t = token;
                    exec(cid, &child, &w2)
                });
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
                if w.borrow().alive[cid] {
                    err(format!("task {cid} alive after cancel"));
                }
                if w.borrow().closure_drops[cid] != 1 {
                    err(format!("task {cid}: closure not dropped after cancel"));
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

fn check_tree(mut root: Node, quanta: u32, seed: u64) -> Result<(), TestCaseError> {
    quiet_markers();
    root.ops.retain(|o| !matches!(o, Op::Panic)); // main does not fail
    let w: W = Rc::new(RefCell::new(World::default()));
    let w2 = w.clone();
    let end = Builder::new()
        .quanta(quanta)
        .seed(seed)
        .stack_size(32 * 1024)
        .run((), move |()| {
            let id = w2.borrow_mut().new_task();
            exec(id, &root, &w2);
            let s = mkernel::stats();
            (s.stacks.in_use, s.live_tasks, s.spawned)
        });
    let w = w.borrow();
    prop_assert_eq!(&w.errors, &Vec::<String>::new());
    prop_assert_eq!(end.0, 1, "stacks in use at the end of main: only main's");
    prop_assert_eq!(end.1, 1, "task records alive at the end of main");
    prop_assert_eq!(end.2 as usize, w.alive.len(), "every task was spawned once");
    prop_assert!(w.alive.iter().all(|a| !a), "every task ended");
    // Task 0 is main: it has no closure token.
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
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_task_trees_respect_the_rules(
        root in node(),
        quanta in prop_oneof![Just(1u32), Just(2), Just(u32::MAX)],
        seed in any::<u64>(),
    ) {
        check_tree(root, quanta, seed)?;
    }
}

/// A fixed deep tree, so that depth 4 is certainly exercised.
#[test]
fn a_deep_tree_with_every_operation() {
    fn level(d: u32) -> Node {
        let mut ops = vec![Op::Yield];
        if d > 0 {
            ops.push(Op::Spawn(level(d - 1)));
            ops.push(Op::Spawn(level(d - 1)));
            ops.push(Op::Spawn(Node {
                ops: vec![Op::Yield, Op::Yield, Op::Panic],
            }));
            ops.push(Op::Yield);
            ops.push(Op::Cancel(0));
            ops.push(Op::Join(0));
        }
        ops.push(Op::Yield);
        Node { ops }
    }
    let root = level(4);
    assert!(root.size() > 40);
    for quanta in [1, 3, u32::MAX] {
        check_tree(root.clone(), quanta, 7).unwrap();
    }
}
