//! The little of `cargo metadata` this tool needs, through the
//! `cargo_metadata` crate.

use std::path::PathBuf;

use cargo_metadata::{MetadataCommand, Package};

use crate::Result;

/// The parts of `cargo metadata` used here.
pub struct Metadata {
    /// The whole output: every package of the graph (all platforms:
    /// `solo5-sys` is a dependency of mkernel only under
    /// `cfg(mkernel_solo5)`, so no `--filter-platform`).
    pub raw: cargo_metadata::Metadata,
    /// The workspace's target directory.
    pub target_dir: PathBuf,
}

impl Metadata {
    /// Runs `cargo metadata` for the crate in the current directory, or the
    /// one of `manifest_path`.
    pub fn load(manifest_path: Option<&str>) -> Result<Metadata> {
        let mut cmd = MetadataCommand::new();
        cmd.cargo_path(crate::cargo());
        if let Some(m) = manifest_path {
            cmd.manifest_path(m);
        }
        let raw = cmd.exec().map_err(|e| e.to_string())?;
        let target_dir = raw.target_directory.clone().into_std_path_buf();
        Ok(Metadata { raw, target_dir })
    }

    /// The package called `name`, if the graph has it (the newest version
    /// when several are present).
    pub fn package(&self, name: &str) -> Option<&Package> {
        newest(&self.raw.packages, name)
    }
}

/// The program to build when neither `--bin` nor `--example` is given,
/// chosen as `cargo run` does: the only binary target of the package
/// (`package`, else the one of the manifest, else every workspace member
/// of a virtual manifest), or its `default-run` binary when it has several.
/// Returns (package, binary).
pub fn default_binary(meta: &Metadata, package: Option<&str>) -> Result<(String, String)> {
    let candidates: Vec<&Package> = match package {
        Some(name) => {
            let members = meta.raw.workspace_packages();
            let found = members
                .iter()
                .copied()
                .find(|p| p.name.as_str() == name)
                .or_else(|| meta.package(name));
            vec![found.ok_or_else(|| format!("package `{name}` is not in the crate graph"))?]
        }
        None => match meta.raw.root_package() {
            Some(p) => vec![p],
            None => meta.raw.workspace_packages(),
        },
    };
    only_binary(&candidates)
}

/// The binary that `cargo run` would pick among the binary targets of
/// `candidates`, or an error listing the choices.
fn only_binary(candidates: &[&Package]) -> Result<(String, String)> {
    let bins: Vec<(&Package, &str)> = candidates
        .iter()
        .flat_map(|p| {
            p.targets
                .iter()
                .filter(|t| t.is_bin())
                .map(move |t| (*p, t.name.as_str()))
        })
        .collect();
    let chosen = match bins.as_slice() {
        [one] => Some(*one),
        _ => bins
            .iter()
            .find(|(p, b)| candidates.len() == 1 && p.default_run.as_deref() == Some(*b))
            .copied(),
    };
    if let Some((p, b)) = chosen {
        return Ok((p.name.to_string(), b.to_string()));
    }
    let whose = match candidates {
        [p] => format!("the package `{}`", p.name),
        _ => "the workspace".to_string(),
    };
    if bins.is_empty() {
        let examples: Vec<&str> = candidates
            .iter()
            .flat_map(|p| p.targets.iter().filter(|t| t.is_example()))
            .map(|t| t.name.as_str())
            .collect();
        let examples = if examples.is_empty() {
            String::new()
        } else {
            format!(" (its examples: {})", examples.join(", "))
        };
        return Err(format!(
            "{whose} has no binary target: choose the program with --example NAME{examples}"
        ));
    }
    let names: Vec<&str> = bins.iter().map(|(_, b)| *b).collect();
    Err(format!(
        "{whose} has several binaries ({}): choose one with --bin NAME (or set \
         `default-run` in Cargo.toml), or an example with --example NAME",
        names.join(", ")
    ))
}

/// The package called `name` with the highest version (semver order:
/// 0.10.0 is newer than 0.9.0).
fn newest<'a>(packages: &'a [Package], name: &str) -> Option<&'a Package> {
    packages
        .iter()
        .filter(|p| p.name.as_str() == name)
        .max_by(|a, b| a.version.cmp(&b.version))
}

/// The directory holding a package's `Cargo.toml`.
pub fn package_dir(p: &Package) -> PathBuf {
    let manifest = p.manifest_path.clone().into_std_path_buf();
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A package as `cargo metadata` describes it, with the targets given
    /// as (name, kind).
    pub(crate) fn package(name: &str, version: &str, targets: &[(&str, &str)]) -> Package {
        let dir = format!("/src/{name}-{version}");
        let targets: Vec<serde_json::Value> = targets
            .iter()
            .map(|(t, kind)| {
                serde_json::json!({
                    "name": t,
                    "kind": [kind],
                    "crate_types": [if *kind == "lib" { "lib" } else { "bin" }],
                    "src_path": format!("{dir}/src/{t}.rs"),
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": name,
            "version": version,
            "id": format!("registry+https://github.com/rust-lang/crates.io-index#{name}@{version}"),
            "dependencies": [],
            "targets": targets,
            "features": {},
            "manifest_path": format!("{dir}/Cargo.toml"),
        }))
        .expect("a valid package description")
    }

    #[test]
    fn the_only_binary_is_chosen() {
        let lib_bin_examples = package(
            "app",
            "0.1.0",
            &[("app", "lib"), ("app", "bin"), ("demo", "example")],
        );
        assert_eq!(
            only_binary(&[&lib_bin_examples]),
            Ok(("app".into(), "app".into()))
        );
        // Across the members of a virtual workspace, as `cargo run` does.
        let lib_only = package("support", "0.1.0", &[("support", "lib")]);
        assert_eq!(
            only_binary(&[&lib_only, &lib_bin_examples]),
            Ok(("app".into(), "app".into()))
        );
    }

    #[test]
    fn several_binaries_are_listed() {
        let two = package("app", "0.1.0", &[("server", "bin"), ("client", "bin")]);
        let e = only_binary(&[&two]).unwrap_err();
        assert!(e.contains("several binaries (server, client)"), "{e}");
        assert!(e.contains("--bin NAME"), "{e}");
        // `default-run` settles it.
        let mut with_default = two.clone();
        with_default.default_run = Some("client".into());
        assert_eq!(
            only_binary(&[&with_default]),
            Ok(("app".into(), "client".into()))
        );
    }

    #[test]
    fn no_binary_lists_the_examples() {
        let lib = package(
            "mkernel",
            "0.1.0",
            &[
                ("mkernel", "lib"),
                ("hello", "example"),
                ("sleep", "example"),
            ],
        );
        let e = only_binary(&[&lib]).unwrap_err();
        assert!(e.contains("`mkernel` has no binary target"), "{e}");
        assert!(
            e.contains("--example NAME (its examples: hello, sleep)"),
            "{e}"
        );
    }

    #[test]
    fn newest_version_is_chosen_by_semver() {
        // As strings "0.9.0" > "0.10.0"; as versions 0.10.0 is the newest.
        let pkgs = [
            package("solo5-sys", "0.9.0", &[]),
            package("solo5-sys", "0.10.0", &[]),
            package("solo5-sys", "0.2.0", &[]),
            package("other", "1.0.0", &[]),
        ];
        let p = newest(&pkgs, "solo5-sys").expect("found");
        assert_eq!(p.version.to_string(), "0.10.0");
        assert_eq!(
            package_dir(p),
            PathBuf::from("/src/solo5-sys-0.10.0"),
            "the directory of the chosen package's Cargo.toml"
        );
        // Pre-releases sort below their release.
        let pkgs = [
            package("solo5-sys", "0.10.0", &[]),
            package("solo5-sys", "0.10.0-rc.1", &[]),
        ];
        assert_eq!(
            newest(&pkgs, "solo5-sys").unwrap().version.to_string(),
            "0.10.0"
        );
        assert!(newest(&pkgs, "missing").is_none());
    }
}
