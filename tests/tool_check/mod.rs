//! Whether the programs a test drives are installed.

use std::process::Command;

/// The first of `tools` that is not on the PATH, said as a skip reason.
pub fn missing_tool(tools: &[&str]) -> Option<String> {
    tools.iter().find_map(|tool| {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        (!found).then(|| format!("{tool} not installed (scripts/setup installs it)"))
    })
}
