//! The demo's site: its files, which the demo checks every response
//! against, and the ustar archive of them that it serves. Shared with
//! `tests/trace.rs`, which makes the image for the demo under `solo5-spt`.

#[cfg(not(mkernel_solo5))]
use std::path::Path;

/// The site: a few files of various sizes, with reproducible contents.
pub fn files() -> Vec<(String, Vec<u8>)> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let mut files = vec![(
        "index.html".to_string(),
        b"<html><body><h1>Served by an mkernel unikernel</h1></body></html>\n".to_vec(),
    )];
    for (name, size) in [
        ("small.bin", 1_000),
        ("medium.bin", 64 * 1024),
        ("large.bin", 1 << 20),
    ] {
        files.push((format!("data/{name}"), bytes(size)));
    }
    files
}

/// Writes `files` as a ustar archive (what `tar --format=ustar -cf` makes).
#[cfg(not(mkernel_solo5))]
pub fn write_ustar(path: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0); // end of archive
    std::fs::write(path, out)
}
