//! mkernel: direct-style unikernels in Rust (work in progress).
