//! Post-link checks of a Solo5 image (ELF64, little endian).
//!
//! mkernel's start-up code (`src/platform/solo5/start.rs`) cannot read the
//! ELF headers (Solo5 does not map them): it lays out the TLS block from the
//! `__tls_*` symbols of the linker script. Those must agree with the PT_TLS
//! header from which the linker computed every `%fs`-relative offset;
//! [`check_tls`] verifies that on every image, so a linker-script change
//! cannot silently shift the thread-locals again.

use std::path::Path;

use crate::{Result, fail};

const PT_TLS: u32 = 7;
const SHT_SYMTAB: u32 = 2;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}
fn usize_at(b: &[u8], o: usize) -> Option<usize> {
    usize::try_from(u64_at(b, o)?).ok()
}

/// The PT_TLS header: (vaddr, filesz, memsz, align).
fn pt_tls(b: &[u8]) -> Option<Option<(u64, u64, u64, u64)>> {
    let phoff = usize_at(b, 0x20)?;
    let phentsize = usize::from(u16_at(b, 0x36)?);
    let phnum = usize::from(u16_at(b, 0x38)?);
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if u32_at(b, p)? == PT_TLS {
            return Some(Some((
                u64_at(b, p + 0x10)?,
                u64_at(b, p + 0x20)?,
                u64_at(b, p + 0x28)?,
                u64_at(b, p + 0x30)?,
            )));
        }
    }
    Some(None)
}

/// The value of the symbol `name` in `.symtab`.
fn symbol(b: &[u8], name: &str) -> Option<Option<u64>> {
    let shoff = usize_at(b, 0x28)?;
    let shentsize = usize::from(u16_at(b, 0x3a)?);
    let shnum = usize::from(u16_at(b, 0x3c)?);
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        if u32_at(b, sh + 4)? != SHT_SYMTAB {
            continue;
        }
        let off = usize_at(b, sh + 0x18)?;
        let size = usize_at(b, sh + 0x20)?;
        let link = usize::try_from(u32_at(b, sh + 0x28)?).ok()?;
        let entsize = usize_at(b, sh + 0x38)?.max(24);
        let strtab = shoff + link * shentsize;
        let str_off = usize_at(b, strtab + 0x18)?;
        for s in (off..off + size).step_by(entsize) {
            let n = str_off + usize::try_from(u32_at(b, s)?).ok()?;
            let end = n + b.get(n..)?.iter().position(|&c| c == 0)?;
            if &b[n..end] == name.as_bytes() {
                return Some(Some(u64_at(b, s + 8)?));
            }
        }
    }
    Some(None)
}

/// Checks that the linker script's `__tls_*` symbols describe the PT_TLS
/// segment exactly (start, sizes and alignment).
pub fn check_tls(image: &Path) -> Result<()> {
    let b = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let bad = || format!("{}: not a readable ELF64 image", image.display());
    if b.get(..4) != Some(b"\x7fELF") || b.get(4) != Some(&2) {
        return fail(bad());
    }
    let Some((vaddr, filesz, memsz, align)) = pt_tls(&b).ok_or_else(bad)? else {
        return Ok(()); // no thread-locals at all
    };
    let mut mismatches = Vec::new();
    for (name, want) in [
        ("__tls_start", vaddr),
        ("__tls_filesz", filesz),
        ("__tls_memsz", memsz),
        ("__tls_align", align),
    ] {
        match symbol(&b, name).ok_or_else(bad)? {
            Some(v) if v == want => {}
            Some(v) => mismatches.push(format!("{name} = {v:#x}, PT_TLS says {want:#x}")),
            None => mismatches.push(format!("{name} is not defined")),
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        fail(format!(
            "{}: the linker script's TLS symbols disagree with the PT_TLS header \
             (the unikernel would read shifted thread-locals): {}",
            image.display(),
            mismatches.join("; ")
        ))
    }
}
