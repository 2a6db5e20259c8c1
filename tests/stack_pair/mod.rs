//! Two TCP/IP stacks joined by an in-memory link, for the in-process
//! network tests (`tests/net_timeouts.rs`, `tests/tcp_hostile.rs`).

use mkernel::net::link::{self, CutSwitch, Faults};
use mkernel::net::stack::{Stack, StackConfig};

/// Runs `f` with stack `a` (10.0.0.1) and stack `b` (10.0.0.2) on the two
/// ends of one link, and the switch that cuts that link.
pub fn run_pair<T: 'static>(f: impl FnOnce(Stack, Stack, CutSwitch) -> T + 'static) -> T {
    let (a, b) = link::pair(Faults::default());
    let cut = a.cut_switch();
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .run((mkernel::net("a"), mkernel::net("b")), move |(a, b)| {
            let sa = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
            let sb = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
            f(sa, sb, cut)
        })
}
