//! [`DeviceError`]: why a run did not get as far as its main function.

use core::fmt;
use std::error::Error as StdError;
use std::io;
use std::sync::Arc;

/// What kind of [`DeviceError`] this is: why the main function did not run.
///
/// ```
/// use mkernel::devices::DeviceErrorKind;
/// let r = mkernel::Builder::new()
///     .block_file("other", "/nonexistent/disk.img")
///     .try_run(mkernel::block("disk"), |_disk| ());
/// // `other` is mapped, but the program declares `disk`.
/// assert_eq!(r.unwrap_err().kind(), DeviceErrorKind::Undeclared);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceErrorKind {
    /// The program's device list itself is wrong: a name that is not 1 to
    /// 67 ASCII letters or digits, or a name declared twice.
    InvalidList,
    /// The command line before `--` is malformed (not a device flag, a
    /// flag without a value, a device mapped twice, a bad MAC or sector
    /// size).
    CommandLine,
    /// A device is mapped (on the command line or by the
    /// [`Builder`](crate::Builder)) that the program does not declare.
    Undeclared,
    /// A declared device is not mapped.
    NotMapped,
    /// A device could not be opened (a missing file, a TAP that cannot be
    /// opened, a device the Solo5 tender does not have).
    /// [`source`](StdError::source) is the [`io::Error`] of the open.
    Open,
    /// The platform's event source could not be created.
    /// [`source`](StdError::source) is the [`io::Error`].
    Platform,
    /// The function of a [`try_map`](crate::try_map) device argument
    /// failed (for [`stack()`](crate::stack()): a malformed `--ipv4`
    /// flag); [`source`](StdError::source) is its error.
    Map,
    /// `MKERNEL_MANIFEST=1` is set: the Solo5 manifest of the device list
    /// was printed on stdout instead of running the main function. Not a
    /// failure: [`Builder::run`](crate::Builder::run) exits with status 0
    /// then, which is what `cargo mkernel` expects of a program asked for
    /// its manifest.
    ManifestPrinted,
}

/// Why [`Builder::try_run`](crate::Builder::try_run) did not run the main
/// function: a device that is not mapped or cannot be opened, a malformed
/// command line, a failed [`try_map`](crate::try_map), or the manifest
/// printed instead ([`DeviceErrorKind::ManifestPrinted`]).
///
/// Match on [`kind`](DeviceError::kind); the message
/// ([`Display`](fmt::Display)) names the device and says what to pass. It
/// already includes the text of the underlying error, if any, which
/// [`source`](StdError::source) gives as a value (the [`io::Error`] of a
/// failed open, the error of a [`try_map`](crate::try_map) function). An
/// `io::Error` made from it ([`From`]) has a matching [`io::ErrorKind`].
///
/// ```
/// use mkernel::devices::{DeviceError, DeviceErrorKind};
/// use std::error::Error;
/// let e: DeviceError = mkernel::Builder::new()
///     .block_file("disk", "/nonexistent/disk.img")
///     .try_run(mkernel::block("disk"), |_disk| ())
///     .unwrap_err();
/// assert_eq!(e.kind(), DeviceErrorKind::Open);
/// let cause = e.source().unwrap().downcast_ref::<std::io::Error>().unwrap();
/// assert_eq!(cause.kind(), std::io::ErrorKind::NotFound);
/// assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::NotFound);
/// ```
#[derive(Debug, Clone)]
pub struct DeviceError {
    kind: DeviceErrorKind,
    msg: String,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl DeviceError {
    pub(crate) fn new(kind: DeviceErrorKind, msg: String) -> DeviceError {
        DeviceError {
            kind,
            msg,
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: DeviceErrorKind,
        msg: String,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> DeviceError {
        DeviceError {
            kind,
            msg,
            source: Some(Arc::from(source.into())),
        }
    }

    /// Why the main function did not run.
    #[must_use]
    pub fn kind(&self) -> DeviceErrorKind {
        self.kind
    }
}

/// Two errors are equal when their kinds and messages are (the message
/// includes the text of the source, if any).
impl PartialEq for DeviceError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.msg == other.msg
    }
}

impl Eq for DeviceError {}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl StdError for DeviceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<DeviceError> for io::Error {
    /// The [`io::ErrorKind`] follows the kind: `NotFound` for
    /// [`NotMapped`](DeviceErrorKind::NotMapped), `InvalidInput` for a bad
    /// device list or command line, the cause's kind for
    /// [`Open`](DeviceErrorKind::Open) and
    /// [`Platform`](DeviceErrorKind::Platform) (and for
    /// [`Map`](DeviceErrorKind::Map) when the cause is an `io::Error`;
    /// `InvalidInput` when it is a
    /// [`ConfigError`](crate::net::stack::ConfigError)), `Other` otherwise.
    /// The `DeviceError` is the `io::Error`'s
    /// [`get_ref`](io::Error::get_ref).
    fn from(e: DeviceError) -> io::Error {
        let cause = e.source.as_deref();
        let io_kind = cause
            .and_then(|c| c.downcast_ref::<io::Error>())
            .map(io::Error::kind);
        let kind = match e.kind {
            DeviceErrorKind::InvalidList
            | DeviceErrorKind::CommandLine
            | DeviceErrorKind::Undeclared => io::ErrorKind::InvalidInput,
            DeviceErrorKind::NotMapped => io::ErrorKind::NotFound,
            DeviceErrorKind::Open | DeviceErrorKind::Platform => {
                io_kind.unwrap_or(io::ErrorKind::Other)
            }
            DeviceErrorKind::Map => io_kind.unwrap_or_else(|| {
                if cause.is_some_and(|c| c.is::<crate::net::stack::ConfigError>()) {
                    io::ErrorKind::InvalidInput
                } else {
                    io::ErrorKind::Other
                }
            }),
            DeviceErrorKind::ManifestPrinted => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
