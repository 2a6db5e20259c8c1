//! mkernel: direct-style unikernels in Rust (work in progress).

/// The Solo5 platform layer (std on Solo5, hypercalls), built only by
/// `cargo mkernel` for unikernel images.
#[cfg(mkernel_solo5)]
#[path = "platform/solo5/mod.rs"]
mod platform_solo5;
