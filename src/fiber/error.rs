//! What a task can end with, and the rule violations that stop a run.

use core::any::Any;
use core::fmt;

/// Why a promise has no value.
///
/// ```
/// let r = mkernel::run((), |()| {
///     let p = mkernel::spawn(|| -> u32 { panic!("boom") });
///     p.join()
/// });
/// assert!(matches!(r, Err(mkernel::Error::Panicked(_))));
/// ```
pub enum Error {
    /// The task was cancelled (with [`Promise::cancel`](crate::Promise::cancel),
    /// by [`join_first`](crate::join_first), or because its parent failed).
    Cancelled,
    /// The task panicked; the payload is what `panic!` was given.
    Panicked(Box<dyn Any + Send>),
}

impl Error {
    /// The panic payload, to resume the child's panic in the parent
    /// (`std::panic::resume_unwind(e.into_panic())`), as Miou's `await_exn`
    /// re-raises the child's exception.
    ///
    /// # Panics
    /// If the task was cancelled rather than panicking (see
    /// [`try_into_panic`](Error::try_into_panic)).
    ///
    /// ```
    /// let payload = mkernel::run((), |()| {
    ///     mkernel::spawn(|| -> () { std::panic::panic_any(7u32) }).join().unwrap_err().into_panic()
    /// });
    /// assert_eq!(payload.downcast_ref::<u32>(), Some(&7));
    /// ```
    #[must_use]
    #[track_caller]
    pub fn into_panic(self) -> Box<dyn Any + Send> {
        match self {
            Error::Panicked(p) => p,
            Error::Cancelled => panic!("mkernel: Error::into_panic on a cancelled task"),
        }
    }

    /// The panic payload, or the error itself when the task was cancelled.
    ///
    /// # Errors
    /// `Err(Error::Cancelled)` when the task did not panic.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send>, Error> {
        match self {
            Error::Panicked(p) => Ok(p),
            e => Err(e),
        }
    }

    /// Whether the task was cancelled.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }

    /// Whether the task panicked.
    #[must_use]
    pub fn is_panic(&self) -> bool {
        matches!(self, Error::Panicked(_))
    }

    /// The panic message, when the payload is a string (as `panic!("...")` makes).
    #[must_use]
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            Error::Cancelled => None,
            Error::Panicked(p) => payload_str(p.as_ref()),
        }
    }
}

pub(crate) fn payload_str(p: &(dyn Any + Send)) -> Option<&str> {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        Some(s)
    } else {
        p.downcast_ref::<String>().map(String::as_str)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cancelled => f.write_str("Cancelled"),
            Error::Panicked(p) => match payload_str(p.as_ref()) {
                Some(s) => write!(f, "Panicked({s:?})"),
                None => f.write_str("Panicked(..)"),
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cancelled => f.write_str("the task was cancelled"),
            Error::Panicked(p) => match payload_str(p.as_ref()) {
                Some(s) => write!(f, "the task panicked: {s}"),
                None => f.write_str("the task panicked"),
            },
        }
    }
}

impl std::error::Error for Error {}

/// A broken rule of the task model (see the crate docs, "Rules").
///
/// A violation is a programming error, not a condition to handle: it is the
/// payload of the panic that stops the whole run, after a message saying what
/// happened and where has been printed on stderr.
///
/// ```
/// use std::panic::{catch_unwind, AssertUnwindSafe};
/// let r = catch_unwind(AssertUnwindSafe(|| {
///     mkernel::run((), |()| {
///         let _forgotten = mkernel::spawn(|| ());
///     })
/// }));
/// let payload = r.unwrap_err();
/// assert_eq!(
///     payload.downcast_ref::<mkernel::Violation>(),
///     Some(&mkernel::Violation::StillHasChildren)
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Violation {
    /// A task returned while one of its children was neither joined nor
    /// cancelled.
    StillHasChildren,
    /// A task joined or cancelled a promise it did not spawn.
    NotAChild,
    /// A task ended normally while still owning a [`Resource`](crate::Resource).
    ResourceLeaked,
    /// A task used a [`Resource`](crate::Resource) it does not own.
    NotOwner,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Violation::StillHasChildren => {
                "a task returned while a child was neither joined nor cancelled"
            }
            Violation::NotAChild => "a task joined or cancelled a promise it did not spawn",
            Violation::ResourceLeaked => "a task ended while still owning a resource",
            Violation::NotOwner => "a task used a resource it does not own",
        })
    }
}

impl std::error::Error for Violation {}
