//! What `examples/random` prints, checked the same way hosted
//! (`tests/examples.rs`) and under spt (`tests/solo5_examples.rs`).

#![allow(dead_code, reason = "each test file uses only part of these helpers")]

/// The three values of a run of `examples/random` (the hex of
/// `mkernel::fill_random`, of `getrandom::fill`, the `HashMap` order),
/// asserting their form: 64 and 32 lower-case hex digits, and a
/// permutation of 0..16.
pub fn parse(output: &str) -> Vec<String> {
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 3, "{output}");
    let mut values = Vec::new();
    for (line, (label, hex_len)) in lines.iter().zip([
        ("mkernel::fill_random: ", Some(64)),
        ("getrandom::fill: ", Some(32)),
        ("HashMap order: ", None),
    ]) {
        let value = line
            .strip_prefix(label)
            .unwrap_or_else(|| panic!("expected {label:?} in {line:?}"));
        match hex_len {
            Some(n) => assert!(
                value.len() == n && value.bytes().all(|b| b"0123456789abcdef".contains(&b)),
                "{label}: not {n} hex digits: {value:?}"
            ),
            None => {
                let mut keys: Vec<u32> = value.split(',').map(|k| k.parse().unwrap()).collect();
                keys.sort_unstable();
                assert_eq!(keys, (0..16).collect::<Vec<_>>(), "{line}");
            }
        }
        values.push(value.to_string());
    }
    // 32 random bytes are never all zero (nor 16).
    assert_ne!(values[0], "0".repeat(64));
    assert_ne!(values[1], "0".repeat(32));
    values
}

/// Two runs drew different bytes from both sources (the `HashMap` order
/// may repeat by chance: 16! orders are not all equally likely).
pub fn assert_differ(a: &[String], b: &[String]) {
    assert_ne!(a[0], b[0], "mkernel::fill_random gave the same bytes twice");
    assert_ne!(a[1], b[1], "getrandom::fill gave the same bytes twice");
}
