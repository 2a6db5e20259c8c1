//! mkernel: direct-style unikernels in Rust (work in progress).

/// Platform layers (the hosted Linux process; Solo5).
pub(crate) mod platform {
    pub(crate) mod hosted;
}

/// Networking: net devices, in-memory links, the TCP/IP stack.
pub mod net {
    pub mod link;
}

/// Devices: the typed device list, the manifest, the command line.
pub(crate) mod devices {
    pub(crate) mod cmdline;
}
