//! mkernel: direct-style unikernels in Rust (work in progress).

pub mod net {
    pub mod link;
}

pub(crate) mod devices {
    pub(crate) mod cmdline;
}
