//! Post-link checks of a Solo5 image (ELF64, little endian).
//!
//! mkernel's start-up code (`src/platform/solo5/start.rs`) cannot read the
//! ELF headers (Solo5 does not map them): it lays out the TLS block from the
//! `__tls_*` symbols of the linker script. Those must agree with the PT_TLS
//! header from which the linker computed every `%fs`-relative offset;
//! [`check_tls`] verifies that on every image, so a linker-script change
//! cannot silently shift the thread-locals again.
//!
//! QEMU boots a virtio image as a multiboot kernel, from the header's
//! addresses rather than the ELF headers; [`check_multiboot`] verifies that
//! the header is where QEMU looks and that the file holds every byte QEMU
//! will copy.

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

/// Multiboot (v1) header magic.
const MULTIBOOT_MAGIC: u32 = 0x1bad_b002;
/// Header flag: the load addresses are in the header ("a.out kludge").
const MULTIBOOT_AOUT_KLUDGE: u32 = 1 << 16;

/// Checks a virtio image: a multiboot header, 4-byte aligned, in the first
/// 8 KiB of the file, and (with the a.out kludge Solo5 uses) the file long
/// enough for QEMU to copy `[load_addr, load_end_addr)` from it.
pub fn check_multiboot(image: &Path) -> Result<()> {
    let b = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let found = (0..8192usize.min(b.len().saturating_sub(32)))
        .step_by(4)
        .find(|&o| {
            let (Some(magic), Some(flags), Some(sum)) =
                (u32_at(&b, o), u32_at(&b, o + 4), u32_at(&b, o + 8))
            else {
                return false;
            };
            magic == MULTIBOOT_MAGIC && magic.wrapping_add(flags).wrapping_add(sum) == 0
        });
    let Some(off) = found else {
        return fail(format!(
            "{}: no multiboot header in the first 8 KiB (the linker script must keep \
             `.data.multiboot` first in `.text`): QEMU cannot boot it",
            image.display()
        ));
    };
    let flags = u32_at(&b, off + 4).unwrap_or(0);
    if flags & MULTIBOOT_AOUT_KLUDGE == 0 {
        return Ok(());
    }
    let field = |i: usize| u64::from(u32_at(&b, off + 12 + 4 * i).unwrap_or(0));
    let (header_addr, load_addr, load_end_addr) = (field(0), field(1), field(2));
    let start = (off as u64).checked_sub(header_addr.wrapping_sub(load_addr));
    let needed = start.map(|s| s + load_end_addr.saturating_sub(load_addr));
    match needed {
        Some(n) if n <= b.len() as u64 => Ok(()),
        _ => fail(format!(
            "{}: QEMU copies the image up to _edata ({load_end_addr:#x}) from the file, \
             which is {} bytes, too short (the linker script must pad .data to _edata)",
            image.display(),
            b.len()
        )),
    }
}
