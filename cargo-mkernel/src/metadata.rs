//! The little of `cargo metadata` this tool needs.

use std::path::PathBuf;
use std::process::Command;

use crate::Result;

/// One package of the crate graph.
pub struct Package {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Directory holding its `Cargo.toml`.
    pub dir: PathBuf,
}

/// The parts of `cargo metadata` used here.
pub struct Metadata {
    /// Every package of the graph (all platforms: `solo5-sys` is a
    /// dependency of mkernel only under `cfg(mkernel_solo5)`).
    pub packages: Vec<Package>,
    /// The workspace's target directory.
    pub target_dir: PathBuf,
}

impl Metadata {
    /// Runs `cargo metadata` for the crate in the current directory.
    pub fn load(manifest_path: Option<&str>) -> Result<Metadata> {
        let mut cmd = Command::new(crate::cargo());
        cmd.args(["metadata", "--format-version", "1"]);
        if let Some(m) = manifest_path {
            cmd.args(["--manifest-path", m]);
        }
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run `cargo metadata`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`cargo metadata` failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("cannot parse `cargo metadata` output: {e}"))?;
        let packages = v["packages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        let manifest = PathBuf::from(p["manifest_path"].as_str()?);
                        Some(Package {
                            name: p["name"].as_str()?.to_string(),
                            version: p["version"].as_str()?.to_string(),
                            dir: manifest.parent()?.to_path_buf(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let target_dir = PathBuf::from(
            v["target_directory"]
                .as_str()
                .ok_or("`cargo metadata` gave no target_directory")?,
        );
        Ok(Metadata {
            packages,
            target_dir,
        })
    }

    /// The package called `name`, if the graph has it (the newest version
    /// when several are present).
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages
            .iter()
            .filter(|p| p.name == name)
            .max_by(|a, b| a.version.cmp(&b.version))
    }
}
