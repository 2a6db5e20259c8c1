//! mkernel: direct-style unikernels in Rust.

pub mod block;
pub mod devices;
mod fiber;
pub mod net;
mod platform;
mod run;
pub mod sync;
pub mod testing;
mod time;

pub use block::Block;
pub use devices::{Devices, block, constant, map, net};
pub use fiber::*;
pub use net::{Net, NetCfg};
pub use platform::args;
pub use run::{Builder, run};
pub use time::{clock_monotonic, clock_wall, sleep};
