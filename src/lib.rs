//! mkernel: direct-style unikernels in Rust.

mod devices;
mod fiber;
mod platform;
mod run;
pub mod sync;

pub use devices::Devices;
pub use fiber::*;
pub use run::{Builder, run};
