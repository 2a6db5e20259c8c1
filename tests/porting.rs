//! The porting guide covers the OCaml interfaces: every value listed in
//! `docs/porting-names.txt` (the values of Miou's `miou.mli` and mkernel's
//! `mkernel.mli`, one per line as `miou: Miou.Mutex.lock`) has a row in
//! `docs/porting.md`, that is a table line whose first cell names it in
//! backticks (`` `Miou.Mutex.lock` ``; a cell may name several).

use std::collections::BTreeSet;

fn read(rel: &str) -> String {
    let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The values the list names (comments and blank lines skipped).
fn listed() -> Vec<String> {
    read("docs/porting-names.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (lib, name) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("not `LIB: Module.value`: {l:?}"));
            assert!(
                matches!(lib, "miou" | "mkernel"),
                "unknown library {lib:?} in {l:?}"
            );
            name.to_string()
        })
        .collect()
}

/// The names in backticks in the first cell of every table row of the
/// guide (header and separator rows have none).
fn rows() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in read("docs/porting.md").lines() {
        let Some(rest) = line.trim_start().strip_prefix('|') else {
            continue;
        };
        let first = rest.split('|').next().unwrap_or("");
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                names.insert(part.trim().to_string());
            }
        }
    }
    names
}

#[test]
fn every_value_of_the_ocaml_interfaces_has_a_row_in_the_guide() {
    let listed = listed();
    assert!(
        listed.len() > 90,
        "only {} values listed: is docs/porting-names.txt complete?",
        listed.len()
    );
    let rows = rows();
    let missing: Vec<&String> = listed.iter().filter(|n| !rows.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "docs/porting.md has no row for {} value(s) of docs/porting-names.txt \
         (name each in backticks in a row's first column):\n  {}",
        missing.len(),
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn the_guide_names_no_value_the_interfaces_lack() {
    // A row for a misspelt or removed value would document nothing.
    let listed: BTreeSet<String> = listed().into_iter().collect();
    let extra: Vec<String> = rows()
        .into_iter()
        .filter(|n| n.starts_with("Miou.") || n.starts_with("Mkernel."))
        .filter(|n| !listed.contains(n))
        .collect();
    assert!(
        extra.is_empty(),
        "docs/porting.md has rows for values not in docs/porting-names.txt: {extra:?}"
    );
}
