//! Two TCP/IP stacks joined by an in-memory link, for the in-process
//! network tests (`tests/net_timeouts.rs`, `tests/tcp_hostile.rs`).

use mkernel::net::link::{self, CutSwitch, Faults};
use mkernel::net::stack::{Stack, StackConfig};

/// Runs `f` with stack `a` (10.0.0.1) and stack `b` (10.0.0.2) on the two
/// ends of one link, and the switch that cuts that link.
pub fn run_pair<T: 'static>(f: impl FnOnce(Stack, Stack, CutSwitch) -> T + 'static) -> T {
    run_pair_with(&["--ipv4=10.0.0.1/24"], &["--ipv4=10.0.0.2/24"], f)
}

/// [`run_pair`] with the stacks configured by these arguments
/// (`StackConfig::from_args`).
pub fn run_pair_with<T: 'static>(
    a_args: &[&str],
    b_args: &[&str],
    f: impl FnOnce(Stack, Stack, CutSwitch) -> T + 'static,
) -> T {
    let config = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        StackConfig::from_args(&args).unwrap().0
    };
    let (ca, cb) = (config(a_args), config(b_args));
    let (a, b) = link::pair(Faults::default());
    let cut = a.cut_switch();
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .run((mkernel::net("a"), mkernel::net("b")), move |(a, b)| {
            f(Stack::new(a, ca), Stack::new(b, cb), cut)
        })
}
