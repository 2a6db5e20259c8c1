//! Cooperative synchronisation between tasks of one run: waiting suspends
//! the task, never the thread: [`Mutex`], [`Condition`], [`Lazy`] (Miou's),
//! [`Ivar`] (a one-shot value, Miou's `Computation`) and a bounded
//! [`channel`].
//!
//! A bounded queue shared by producers and consumers:
//!
//! ```
//! use mkernel::sync::{Condition, Mutex};
//! use std::{collections::VecDeque, rc::Rc};
//!
//! let total = mkernel::run((), |()| {
//!     let q = Rc::new((Mutex::new(VecDeque::new()), Condition::new(), Condition::new()));
//!     let producer = { let q = q.clone(); mkernel::spawn(move || {
//!         let (m, not_full, not_empty) = &*q;
//!         for i in 1..=100u32 {
//!             let mut g = m.lock();
//!             while g.len() == 4 { g = not_full.wait(g); }
//!             g.push_back(i);
//!             not_empty.signal();
//!         }
//!     })};
//!     let consumer = { let q = q.clone(); mkernel::spawn(move || {
//!         let (m, not_full, not_empty) = &*q;
//!         let mut sum = 0;
//!         for _ in 0..100 {
//!             let mut g = m.lock();
//!             while g.is_empty() { g = not_empty.wait(g); }
//!             sum += g.pop_front().unwrap();
//!             not_full.signal();
//!         }
//!         sum
//!     })};
//!     producer.join().unwrap();
//!     consumer.join().unwrap()
//! });
//! assert_eq!(total, 5050);
//! ```

mod channel;
mod condition;
mod ivar;
mod lazy;
mod mutex;

pub use channel::{Receiver, RecvError, SendError, Sender, channel};
pub use condition::{Condition, WaitTimeoutResult};
pub use ivar::Ivar;
pub use lazy::Lazy;
pub use mutex::{Mutex, MutexGuard};
