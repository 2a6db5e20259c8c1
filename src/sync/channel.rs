//! A bounded channel between the tasks of a run.

use crate::fiber::WaitQueue;
use core::cell::{Cell, RefCell};
use core::fmt;
use std::collections::VecDeque;
use std::rc::Rc;

/// A bounded multi-producer, single-consumer channel of `capacity` values
/// (at least 1): [`Sender::send`] suspends the task while the channel is
/// full, [`Receiver::recv`] while it is empty — only the task, never the
/// thread. Values come out in the order they went in.
///
/// The channel closes when the receiver is dropped (sends fail and give
/// the value back) or when every sender is dropped (receives drain what is
/// left, then fail).
///
/// ```
/// let sum = mkernel::run((), |()| {
///     let (tx, rx) = mkernel::sync::channel::<u32>(4);
///     let producers: Vec<_> = (0..3).map(|p| {
///         let tx = tx.clone();
///         mkernel::spawn(move || for i in 0..10 { tx.send(p * 100 + i).unwrap(); })
///     }).collect();
///     drop(tx);
///     let consumer = mkernel::spawn(move || {
///         let mut sum = 0;
///         while let Ok(v) = rx.recv() { sum += v; }
///         sum
///     });
///     for r in mkernel::join_all(producers) { r.unwrap(); }
///     consumer.join().unwrap()
/// });
/// assert_eq!(sum, 3 * 45 + 10 * (0 + 100 + 200));
/// ```
#[must_use]
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Rc::new(Shared {
        queue: RefCell::new(VecDeque::with_capacity(capacity.max(1))),
        capacity: capacity.max(1),
        senders: Cell::new(1),
        receiver_alive: Cell::new(true),
        not_full: WaitQueue::new(),
        not_empty: WaitQueue::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    queue: RefCell<VecDeque<T>>,
    capacity: usize,
    senders: Cell<usize>,
    receiver_alive: Cell<bool>,
    not_full: WaitQueue,
    not_empty: WaitQueue,
}

/// The sending side of a [`channel`]; clone it for more producers.
pub struct Sender<T> {
    shared: Rc<Shared<T>>,
}

/// The receiving side of a [`channel`].
pub struct Receiver<T> {
    shared: Rc<Shared<T>>,
}

/// A send failed: the receiver is gone, or (for `try_send`) the channel is
/// full. The value is given back.
#[derive(PartialEq, Eq)]
pub enum SendError<T> {
    /// The receiver was dropped: nobody will ever read the value.
    Closed(T),
    /// The channel is full (only from [`Sender::try_send`]).
    Full(T),
    /// The sending task is being cancelled and cannot wait (only from
    /// [`Sender::send`] on a full channel).
    Cancelled(T),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(v) | SendError::Full(v) | SendError::Cancelled(v) => v,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed(_) => "Closed(..)",
            SendError::Full(_) => "Full(..)",
            SendError::Cancelled(_) => "Cancelled(..)",
        })
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed(_) => "the channel's receiver is gone",
            SendError::Full(_) => "the channel is full",
            SendError::Cancelled(_) => "the sending task is being cancelled",
        })
    }
}

impl<T> std::error::Error for SendError<T> {}

/// A receive failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// Every sender was dropped and the channel is empty.
    Closed,
    /// The channel is empty (only from [`Receiver::try_recv`]).
    Empty,
    /// The receiving task is being cancelled and cannot wait.
    Cancelled,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvError::Closed => "every sender of the channel is gone",
            RecvError::Empty => "the channel is empty",
            RecvError::Cancelled => "the receiving task is being cancelled",
        })
    }
}

impl std::error::Error for RecvError {}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full.
    ///
    /// # Errors
    /// `Closed(value)` if the receiver is gone; `Cancelled(value)` if the
    /// task is being cancelled while the channel is full.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut value = value;
        loop {
            match self.try_send(value) {
                Err(SendError::Full(v)) => {
                    if crate::fiber::cannot_wait() {
                        return Err(SendError::Cancelled(v));
                    }
                    value = v;
                    self.shared.not_full.wait();
                }
                r => return r,
            }
        }
    }

    /// Sends `value` if there is room now.
    ///
    /// # Errors
    /// `Full(value)` if the channel is full, `Closed(value)` if the
    /// receiver is gone.
    pub fn try_send(&self, value: T) -> Result<(), SendError<T>> {
        let s = &self.shared;
        if !s.receiver_alive.get() {
            return Err(SendError::Closed(value));
        }
        let mut q = s.queue.borrow_mut();
        if q.len() >= s.capacity {
            return Err(SendError::Full(value));
        }
        q.push_back(value);
        drop(q);
        s.not_empty.notify_one();
        Ok(())
    }

    /// Whether the receiver is gone.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        !self.shared.receiver_alive.get()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.set(self.shared.senders.get() + 1);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let n = self.shared.senders.get() - 1;
        self.shared.senders.set(n);
        if n == 0 {
            // The receiver may wait for a value that will never come.
            self.shared.not_empty.notify_all();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        write!(f, "Sender({}/{})", s.queue.borrow().len(), s.capacity)
    }
}

impl<T> Receiver<T> {
    /// Receives the next value, waiting while the channel is empty.
    ///
    /// # Errors
    /// `Closed` once every sender is gone and the channel is empty;
    /// `Cancelled` if the task is being cancelled while it is empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        loop {
            match self.try_recv() {
                Err(RecvError::Empty) => {
                    if crate::fiber::cannot_wait() {
                        return Err(RecvError::Cancelled);
                    }
                    self.shared.not_empty.wait();
                }
                r => return r,
            }
        }
    }

    /// Receives a value if one is there now.
    ///
    /// # Errors
    /// `Empty` if none is, `Closed` if none ever will be.
    pub fn try_recv(&self) -> Result<T, RecvError> {
        let s = &self.shared;
        let v = s.queue.borrow_mut().pop_front();
        match v {
            Some(v) => {
                s.not_full.notify_one();
                Ok(v)
            }
            None if s.senders.get() == 0 => Err(RecvError::Closed),
            None => Err(RecvError::Empty),
        }
    }

    /// How many values wait in the channel.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.queue.borrow().len()
    }

    /// Whether no value waits in the channel.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_alive.set(false);
        // Senders waiting for room would wait for ever.
        self.shared.not_full.notify_all();
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        write!(f, "Receiver({}/{})", s.queue.borrow().len(), s.capacity)
    }
}
