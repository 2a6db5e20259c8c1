//! The platform under the scheduler: clocks, the idle wait, devices.

use crate::fiber::{Events, Signal, SyscallId};

/// A device named in the program's device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub(crate) name: String,
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Net,
    Block,
}

/// Why the devices could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceError(pub(crate) String);

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeviceError {}

/// Where device arguments find their devices.
pub struct Acquire {
    _private: (),
}

impl Acquire {
    pub(crate) fn new() -> Acquire {
        Acquire { _private: () }
    }
}

/// The platform's event source.
pub(crate) struct PlatformEvents;

impl Events for PlatformEvents {
    fn select(&mut self, _block: bool, _cancelled: &[SyscallId]) -> Vec<Signal> {
        Vec::new()
    }
}
