//! Miou's dining philosophers (`philosophers/main.ml`), ported: five
//! philosophers think, get hungry, take their forks (a semaphore each,
//! made of a `sync::Mutex` and a `sync::Condition`, with the table's state
//! under a `critical` mutex, as in Tanenbaum's solution), eat, and put the
//! forks back, for ever. Beside them a timer sleeps; `join_first` waits for
//! whichever of the dinner and the timer ends first and cancels the other.
//!
//! ```text
//! cargo run --example philosophers -- -- 3      # meals each (default 3)
//! ```
//!
//! What differs from the OCaml program, and why:
//!
//! - The OCaml dinner is stopped by its timer (30 s by default). Here the
//!   dinner is stopped by a host task once every philosopher has eaten a
//!   number of meals (the argument), by cancelling each philosopher with
//!   `Promise::cancel`; the 30 s timer stays, and is what `join_first`
//!   cancels. So the program ends on its own, quickly.
//! - Durations are milliseconds rather than seconds, drawn from a fixed
//!   seed per philosopher rather than `Random.self_init`.
//! - `Miou.parallel` ran the philosophers on several domains; a unikernel
//!   has one core, so they are tasks (`spawn`) of one scheduler.
//! - The OCaml semaphores start at 1, which lets a philosopher eat beside
//!   an eating neighbour; here they start at 0 (Tanenbaum's value), and the
//!   program checks that no two neighbours ever eat at the same time.
//! - It prints a summary that does not depend on the order in which the
//!   tasks happened to run (the OCaml program prints each step), so the
//!   output is the same hosted and as a unikernel, every time.

use mkernel::sync::{Condition, Mutex};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

const N: usize = 5;

fn left(i: usize) -> usize {
    (i + N - 1) % N
}

fn right(i: usize) -> usize {
    (i + 1) % N
}

/// A counting semaphore from a cooperative mutex and condition (OCaml's
/// `Semaphore` module of the example).
struct Semaphore {
    value: Mutex<u32>,
    condition: Condition,
}

impl Semaphore {
    fn new(value: u32) -> Semaphore {
        Semaphore {
            value: Mutex::new(value),
            condition: Condition::new(),
        }
    }

    fn acquire(&self) {
        let mut v = self.value.lock();
        while *v == 0 {
            v = self.condition.wait(v);
        }
        *v -= 1;
    }

    fn release(&self) {
        *self.value.lock() += 1;
        self.condition.signal();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Hungry,
    Thinking,
    Eating,
}

/// What the `critical` mutex guards: the states, and the meals so far.
struct Critical {
    state: [State; N],
    meals: [u32; N],
}

struct Table {
    sem: Vec<Semaphore>,
    critical: Mutex<Critical>,
    /// Signalled (with `critical`) when the last philosopher to reach
    /// `meals` meals has eaten.
    fed: Condition,
    meals: u32,
    /// Times a philosopher started eating beside an eating neighbour.
    clashes: Cell<u32>,
}

impl Table {
    /// Lets `i` eat if it is hungry and neither neighbour eats.
    fn test(&self, c: &mut Critical, i: usize) {
        if c.state[i] == State::Hungry
            && c.state[left(i)] != State::Eating
            && c.state[right(i)] != State::Eating
        {
            c.state[i] = State::Eating;
            self.sem[i].release();
        }
    }

    fn take_forks(&self, i: usize) {
        {
            let mut c = self.critical.lock();
            c.state[i] = State::Hungry;
            self.test(&mut c, i);
        }
        self.sem[i].acquire();
    }

    fn eat(&self, i: usize, rng: &mut Rng) {
        {
            let mut c = self.critical.lock();
            if c.state[left(i)] == State::Eating || c.state[right(i)] == State::Eating {
                self.clashes.set(self.clashes.get() + 1);
            }
            c.meals[i] += 1;
            if c.meals.iter().all(|&m| m >= self.meals) {
                self.fed.signal();
            }
        }
        mkernel::sleep(rng.duration());
    }

    fn put_forks(&self, i: usize) {
        let mut c = self.critical.lock();
        c.state[i] = State::Thinking;
        self.test(&mut c, left(i));
        self.test(&mut c, right(i));
    }
}

/// xorshift64: the same durations on every run and platform.
struct Rng(u64);

impl Rng {
    /// 1 to 5 ms (the OCaml program sleeps 1 to 6 s).
    fn duration(&mut self) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(1 + self.0 % 5)
    }
}

/// Says that philosopher `i` left, when its task is cancelled: cancellation
/// unwinds the task, so its destructors run.
struct Seat(usize);

impl Drop for Seat {
    fn drop(&mut self) {
        println!("philosopher {} leaves the table", self.0);
    }
}

fn philosopher(table: Rc<Table>, i: usize) {
    let _seat = Seat(i);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
    loop {
        mkernel::sleep(rng.duration()); // think
        table.take_forks(i);
        table.eat(i, &mut rng);
        table.put_forks(i);
    }
}

enum End {
    Fed,
    TimeUp,
}

fn main() {
    let meals = match mkernel::args().first().map(|a| a.parse::<u32>()) {
        None => 3,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: philosophers [MEALS] (a positive number)");
            std::process::exit(2)
        }
    };
    mkernel::run((), move |()| {
        let table = Rc::new(Table {
            sem: (0..N).map(|_| Semaphore::new(0)).collect(),
            critical: Mutex::new(Critical {
                state: [State::Thinking; N],
                meals: [0; N],
            }),
            fed: Condition::new(),
            meals,
            clashes: Cell::new(0),
        });
        println!("{N} philosophers, until each has eaten {meals} times");
        let timer = mkernel::spawn(|| {
            mkernel::sleep(Duration::from_secs(30));
            End::TimeUp
        });
        let dinner = {
            let table = table.clone();
            mkernel::spawn(move || {
                let seats: Vec<_> = (0..N)
                    .map(|i| {
                        let table = table.clone();
                        mkernel::spawn(move || philosopher(table, i))
                    })
                    .collect();
                {
                    let mut c = table.critical.lock();
                    while c.meals.iter().any(|&m| m < table.meals) {
                        c = table.fed.wait(c);
                    }
                }
                println!("everyone has eaten {} times or more", table.meals);
                for p in &seats {
                    p.cancel();
                }
                End::Fed
            })
        };
        match mkernel::join_first(vec![dinner, timer]) {
            Ok(End::Fed) => println!("the dinner ended first: join_first cancelled the timer"),
            Ok(End::TimeUp) => println!("time is up: join_first cancelled the dinner"),
            Err(e) => println!("join_first: {e}"),
        }
        match table.clashes.get() {
            0 => println!("no two neighbours ever ate at the same time"),
            n => println!("{n} times a philosopher ate beside an eating neighbour"),
        }
    });
}
