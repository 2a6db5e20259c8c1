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
                    "crate_types": ["bin"],
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
