//! The host programs this tool runs (binutils, the C toolchain, make,
//! pkg-config, QEMU), located in PATH with the `which` crate. A missing one
//! is an error naming the Debian package that provides it.

use std::path::PathBuf;
use std::process::Command;

use crate::Result;

/// A program looked up in PATH, and the Debian package that provides it.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// The executable's name.
    pub name: &'static str,
    /// The Debian package to install when it is missing.
    pub package: &'static str,
}

/// GNU ld: the relocatable merge of the Rust program and the image link.
pub const LD: Program = Program {
    name: "ld",
    package: "binutils",
};
/// Used by Solo5's build (hiding the bindings' internal symbols).
pub const OBJCOPY: Program = Program {
    name: "objcopy",
    package: "binutils",
};
/// The C compiler Solo5's build and its toolchain wrapper call.
pub const CC: Program = Program {
    name: "cc",
    package: "gcc",
};
/// Solo5's build.
pub const MAKE: Program = Program {
    name: "make",
    package: "make",
};
/// Solo5's `configure.sh` finds libseccomp with it (the spt tender).
pub const PKG_CONFIG: Program = Program {
    name: "pkg-config",
    package: "pkg-config",
};
/// Boots virtio images (`cargo mkernel run --target virtio`).
pub const QEMU: Program = Program {
    name: "qemu-system-x86_64",
    package: "qemu-system-x86",
};

impl Program {
    /// The program's path in PATH, or an error saying what to install.
    pub fn find(self) -> Result<PathBuf> {
        which::which(self.name).map_err(|_| {
            format!(
                "{name} not found in PATH: install the Debian package {pkg} \
                 (`apt-get install --no-install-recommends {pkg}`; in the mkernel \
                 repository ./scripts/setup installs every prerequisite)",
                name = self.name,
                pkg = self.package
            )
        })
    }

    /// A command running the program found by [`Program::find`].
    pub fn command(self) -> Result<Command> {
        Ok(Command::new(self.find()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_in_path() {
        let sh = Program {
            name: "sh",
            package: "dash",
        };
        let path = sh.find().unwrap();
        assert!(path.is_absolute() && path.ends_with("sh"), "{path:?}");
    }

    #[test]
    fn missing_program_names_its_package() {
        let p = Program {
            name: "cargo-mkernel-no-such-program",
            package: "no-such-package",
        };
        let e = p.find().unwrap_err();
        assert!(
            e.starts_with("cargo-mkernel-no-such-program not found in PATH"),
            "{e}"
        );
        assert!(
            e.contains("install the Debian package no-such-package"),
            "{e}"
        );
        assert!(e.contains("./scripts/setup"), "{e}");
        assert!(p.command().is_err());
    }
}
