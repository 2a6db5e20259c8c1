//! Net devices: raw Ethernet frames in and out.
//!
//! [`Net::read`] makes one attempt and, when no frame is there, suspends the
//! task until the device has one (other tasks run meanwhile); several tasks
//! may wait on one device. [`Net::write`] never suspends: it returns once
//! the frame is written, or with an error — a frame is never dropped
//! silently.

mod device;
pub mod link;

pub use device::{Net, NetCfg, NetError, NetErrorKind};
pub(crate) use device::{NetBackend, Pcap, register};
pub mod stack;
#[cfg(feature = "tls")]
pub mod tls;
