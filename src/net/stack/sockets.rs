//! Where the stack's TCP sockets live, so that the cost of a frame, a read
//! or a write does not grow with the number of connections.
//!
//! smoltcp looks for an incoming segment's socket by scanning its
//! `SocketSet`, sends by scanning it, and computes its next deadline by
//! scanning it: with one set, 5,000 idle connections made every request of
//! an active one 30 times slower. So a connection past its handshake gets
//! a set of its own ([`TcpSockets::promote`]), found by its addresses and
//! ports: the stack routes each incoming segment to its connection's set
//! ([`TcpSockets::route`]), sends from a connection's set after the
//! connection's own reads, writes and segments ([`Inner::kick`](super::Inner)),
//! and keeps each set's next deadline in a heap. The shared set (the
//! stack's `sockets`) keeps what has no connection yet or is looked up by
//! smoltcp's rules: listening and handshaking sockets, outgoing ones still
//! connecting, UDP sockets. IPv4 and IPv6 alike (an IPv6 segment behind
//! extension headers goes to the shared set, where smoltcp finds its
//! socket if it is there; such segments are rare).
//!
//! A [`Sock`] names a TCP socket wherever it lives: it stays valid when
//! the socket moves to its own set.

use super::phy::TcpHead;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{Socket, tcp as stcp};
use smoltcp::wire::IpEndpoint;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// A TCP socket of the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Sock(u32);

/// A connection's addresses and ports: (local, remote).
type Key = (IpEndpoint, IpEndpoint);

enum Slot {
    Free,
    /// In the shared set.
    Shared(SocketHandle),
    /// In a set of its own, routed to by `key`; `due` is its set's next
    /// deadline (monotonic ns), as pushed into the heap.
    Own {
        set: SocketSet<'static>,
        handle: SocketHandle,
        key: Key,
        due: Option<u64>,
    },
}

/// The TCP sockets (see the module docs).
pub(crate) struct TcpSockets {
    slots: Vec<Slot>,
    free: Vec<u32>,
    routes: HashMap<Key, Sock>,
    /// Deadlines of the own sets; an entry is stale unless its slot's
    /// `due` still says the same.
    heap: BinaryHeap<Reverse<(u64, Sock)>>,
}

impl Ord for Sock {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for Sock {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl TcpSockets {
    pub(crate) fn new() -> TcpSockets {
        TcpSockets {
            slots: Vec::new(),
            free: Vec::new(),
            routes: HashMap::new(),
            heap: BinaryHeap::new(),
        }
    }

    /// Adds `s` to the shared set.
    pub(crate) fn add(
        &mut self,
        shared: &mut SocketSet<'static>,
        s: stcp::Socket<'static>,
    ) -> Sock {
        let slot = Slot::Shared(shared.add(s));
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                Sock(i)
            }
            None => {
                self.slots.push(slot);
                Sock((self.slots.len() - 1) as u32)
            }
        }
    }

    /// Removes the socket, wherever it is.
    pub(crate) fn remove(&mut self, shared: &mut SocketSet<'static>, id: Sock) {
        match std::mem::replace(&mut self.slots[id.0 as usize], Slot::Free) {
            Slot::Shared(h) => {
                shared.remove(h);
            }
            Slot::Own { key, .. } => {
                self.routes.remove(&key);
            }
            Slot::Free => return,
        }
        self.free.push(id.0);
    }

    /// The socket.
    pub(crate) fn get<'a>(
        &'a self,
        shared: &'a SocketSet<'static>,
        id: Sock,
    ) -> &'a stcp::Socket<'static> {
        match &self.slots[id.0 as usize] {
            Slot::Shared(h) => shared.get::<stcp::Socket>(*h),
            Slot::Own { set, handle, .. } => set.get::<stcp::Socket>(*handle),
            Slot::Free => panic!("mkernel stack: TCP socket {id:?} used after removal"),
        }
    }

    /// The socket, to change.
    pub(crate) fn get_mut<'a>(
        &'a mut self,
        shared: &'a mut SocketSet<'static>,
        id: Sock,
    ) -> &'a mut stcp::Socket<'static> {
        match &mut self.slots[id.0 as usize] {
            Slot::Shared(h) => shared.get_mut::<stcp::Socket>(*h),
            Slot::Own { set, handle, .. } => set.get_mut::<stcp::Socket>(*handle),
            Slot::Free => panic!("mkernel stack: TCP socket {id:?} used after removal"),
        }
    }

    /// The set of its own of a promoted socket (`None`: it is in the
    /// shared set).
    pub(crate) fn own_set(&mut self, id: Sock) -> Option<&mut SocketSet<'static>> {
        match &mut self.slots[id.0 as usize] {
            Slot::Own { set, .. } => Some(set),
            _ => None,
        }
    }

    /// How many sockets there are (shared and own).
    pub(crate) fn own_count(&self) -> usize {
        self.routes.len()
    }

    /// Moves a connected socket from the shared set to a set of its own
    /// (nothing for one still handshaking, closed or already moved). Its
    /// `Sock` stays valid.
    pub(crate) fn promote(&mut self, shared: &mut SocketSet<'static>, id: Sock) {
        let Slot::Shared(h) = self.slots[id.0 as usize] else {
            return;
        };
        let s = shared.get::<stcp::Socket>(h);
        if matches!(
            s.state(),
            stcp::State::Closed
                | stcp::State::Listen
                | stcp::State::SynSent
                | stcp::State::SynReceived
                | stcp::State::TimeWait
        ) {
            return;
        }
        let (Some(local), Some(remote)) = (s.local_endpoint(), s.remote_endpoint()) else {
            return;
        };
        let key = (local, remote);
        if self.routes.contains_key(&key) {
            return;
        }
        let Socket::Tcp(s) = shared.remove(h) else {
            unreachable!("a TCP slot holds a TCP socket")
        };
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(s);
        self.routes.insert(key, id);
        self.slots[id.0 as usize] = Slot::Own {
            set,
            handle,
            key,
            // Sent from at once by the caller's poll.
            due: Some(0),
        };
        self.heap.push(Reverse((0, id)));
    }

    /// The promoted connection an incoming frame belongs to, if any: a
    /// TCP segment (its header `head`) whose addresses and ports are a
    /// connection's that still takes segments.
    pub(crate) fn route(&mut self, head: Option<&TcpHead>) -> Option<Sock> {
        if self.routes.is_empty() {
            return None;
        }
        let head = head?;
        let id = *self.routes.get(&(head.dst, head.src))?;
        let Slot::Own { set, handle, .. } = &self.slots[id.0 as usize] else {
            return None;
        };
        // A closed connection's 4-tuple may be reused by a new SYN: the
        // listeners (shared set) take that.
        match set.get::<stcp::Socket>(*handle).state() {
            stcp::State::Closed | stcp::State::TimeWait => None,
            _ => Some(id),
        }
    }

    /// Records the next deadline of `id`'s own set.
    pub(crate) fn set_due(&mut self, id: Sock, at: Option<u64>) {
        if let Slot::Own { due, .. } = &mut self.slots[id.0 as usize] {
            if *due != at {
                *due = at;
                if let Some(t) = at {
                    self.heap.push(Reverse((t, id)));
                }
            }
        }
    }

    /// The earliest deadline of the own sets.
    pub(crate) fn next_due(&mut self) -> Option<u64> {
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if self.is_due_entry(t, id) {
                return Some(t);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the own sets due at `now` (each once), into `out`.
    pub(crate) fn take_due(&mut self, now: u64, out: &mut Vec<Sock>) {
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self.is_due_entry(t, id) {
                if let Slot::Own { due, .. } = &mut self.slots[id.0 as usize] {
                    *due = None;
                }
                out.push(id);
            }
        }
    }

    fn is_due_entry(&self, t: u64, id: Sock) -> bool {
        matches!(&self.slots[id.0 as usize], Slot::Own { due: Some(d), .. } if *d == t)
    }

    /// Every promoted socket (for the rare passes over all: a neighbour
    /// became known).
    pub(crate) fn owned(&self) -> Vec<Sock> {
        self.routes.values().copied().collect()
    }
}
