//! The typed list of devices a unikernel is a function of.

use crate::platform::Acquire;

/// A list of device arguments (a device, a tuple of them, or `()`), whose
/// value is handed to the main function of [`run`](crate::run).
pub trait Devices {
    /// What the main function receives.
    type Output: 'static;
    /// Adds this list's devices to the manifest.
    #[doc(hidden)]
    fn declare(&self, manifest: &mut Vec<crate::platform::Declared>);
    /// Opens the devices (called inside the run, before the main function).
    #[doc(hidden)]
    fn acquire(self, ctx: &mut Acquire) -> Result<Self::Output, crate::platform::DeviceError>;
}

impl Devices for () {
    type Output = ();
    fn declare(&self, _: &mut Vec<crate::platform::Declared>) {}
    fn acquire(self, _: &mut Acquire) -> Result<(), crate::platform::DeviceError> {
        Ok(())
    }
}
