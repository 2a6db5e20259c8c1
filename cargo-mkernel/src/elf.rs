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

use object::elf::PT_TLS;
use object::endian::{LittleEndian, U32Bytes};
use object::read::Bytes;
use object::read::elf::{ElfFile64, ProgramHeader as _};
use object::{Endianness, Object, ObjectSymbol};

use crate::{Result, fail};

/// The PT_TLS header of `elf`: (vaddr, filesz, memsz, align), `None` when
/// the image has no thread-locals.
fn pt_tls(elf: &ElfFile64<'_, Endianness>) -> Option<(u64, u64, u64, u64)> {
    let e = elf.endian();
    elf.elf_program_headers()
        .iter()
        .find(|ph| ph.p_type(e) == PT_TLS)
        .map(|ph| (ph.p_vaddr(e), ph.p_filesz(e), ph.p_memsz(e), ph.p_align(e)))
}

/// Checks that the linker script's `__tls_*` symbols describe the PT_TLS
/// segment exactly (start, sizes and alignment).
pub fn check_tls(image: &Path) -> Result<()> {
    let b = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let elf = ElfFile64::<Endianness>::parse(&*b)
        .map_err(|e| format!("{}: not a readable ELF64 image ({e})", image.display()))?;
    let Some((vaddr, filesz, memsz, align)) = pt_tls(&elf) else {
        return Ok(()); // no thread-locals at all
    };
    let mut mismatches = Vec::new();
    for (name, want) in [
        ("__tls_start", vaddr),
        ("__tls_filesz", filesz),
        ("__tls_memsz", memsz),
        ("__tls_align", align),
    ] {
        // `.symtab` only: a stripped image has none, and then every symbol
        // is reported missing.
        match elf.symbol_by_name(name).map(|s| s.address()) {
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

/// The little-endian 32-bit word at `offset` of `b`.
fn le32(b: &[u8], offset: usize) -> Option<u32> {
    let w = Bytes(b).read_at::<U32Bytes<LittleEndian>>(offset).ok()?;
    Some(w.get(LittleEndian))
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
                (le32(&b, o), le32(&b, o + 4), le32(&b, o + 8))
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
    let flags = le32(&b, off + 4).unwrap_or(0);
    if flags & MULTIBOOT_AOUT_KLUDGE == 0 {
        return Ok(());
    }
    let field = |i: usize| u64::from(le32(&b, off + 12 + 4 * i).unwrap_or(0));
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

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf;
    use object::write::elf::{FileHeader, ProgramHeader, Sym, Writer};

    /// A minimal ELF64 executable: one PT_TLS header `tls` (vaddr, filesz,
    /// memsz, align) when given, and absolute symbols `syms` in `.symtab`.
    fn write_elf(tls: Option<(u64, u64, u64, u64)>, syms: &[(&str, u64)]) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = Writer::new(Endianness::Little, true, &mut buf);
        w.reserve_file_header();
        w.reserve_program_headers(u32::from(tls.is_some()));
        w.reserve_null_section_index();
        let names: Vec<_> = syms
            .iter()
            .map(|(n, _)| w.add_string(n.as_bytes()))
            .collect();
        w.reserve_null_symbol_index();
        for _ in syms {
            w.reserve_symbol_index(None);
        }
        w.reserve_symtab_section_index();
        w.reserve_strtab_section_index();
        w.reserve_shstrtab_section_index();
        w.reserve_symtab();
        w.reserve_strtab();
        w.reserve_shstrtab();
        w.reserve_section_headers();

        w.write_file_header(&FileHeader {
            os_abi: elf::ELFOSABI_NONE,
            abi_version: 0,
            e_type: elf::ET_EXEC,
            e_machine: elf::EM_X86_64,
            e_entry: 0,
            e_flags: 0,
        })
        .unwrap();
        w.write_align_program_headers();
        if let Some((vaddr, filesz, memsz, align)) = tls {
            w.write_program_header(&ProgramHeader {
                p_type: elf::PT_TLS,
                p_flags: elf::PF_R,
                p_offset: 0,
                p_vaddr: vaddr,
                p_paddr: vaddr,
                p_filesz: filesz,
                p_memsz: memsz,
                p_align: align,
            });
        }
        w.write_null_symbol();
        for (name, (_, value)) in names.into_iter().zip(syms) {
            w.write_symbol(&Sym {
                name: Some(name),
                section: None,
                st_info: (elf::STB_GLOBAL << 4) | elf::STT_NOTYPE,
                st_other: elf::STV_DEFAULT,
                st_shndx: elf::SHN_ABS,
                st_value: *value,
                st_size: 0,
            });
        }
        w.write_strtab();
        w.write_shstrtab();
        w.write_null_section_header();
        w.write_symtab_section_header(1);
        w.write_strtab_section_header();
        w.write_shstrtab_section_header();
        buf
    }

    /// Writes `bytes` to a file of its own and runs `check` on it.
    fn check_file(tag: &str, bytes: &[u8], check: fn(&Path) -> Result<()>) -> Result<()> {
        let dir = std::env::temp_dir().join(format!("cargo-mkernel-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(tag);
        std::fs::write(&path, bytes).unwrap();
        let r = check(&path);
        let _ = std::fs::remove_file(&path);
        r
    }

    const TLS: (u64, u64, u64, u64) = (0x20_1000, 0x18, 0x40, 0x10);
    const SYMS: [(&str, u64); 4] = [
        ("__tls_start", 0x20_1000),
        ("__tls_filesz", 0x18),
        ("__tls_memsz", 0x40),
        ("__tls_align", 0x10),
    ];

    #[test]
    fn tls_symbols_matching_pt_tls_pass() {
        check_file("ok", &write_elf(Some(TLS), &SYMS), check_tls).unwrap();
        // No PT_TLS: nothing to check, even without the symbols.
        check_file("notls", &write_elf(None, &[]), check_tls).unwrap();
    }

    #[test]
    fn tls_mismatch_is_reported_per_symbol() {
        let mut syms = SYMS;
        syms[2].1 = 0x48; // __tls_memsz
        let e = check_file("bad", &write_elf(Some(TLS), &syms[..3]), check_tls).unwrap_err();
        assert!(e.contains("disagree with the PT_TLS header"), "{e}");
        assert!(e.contains("__tls_memsz = 0x48, PT_TLS says 0x40"), "{e}");
        assert!(e.contains("__tls_align is not defined"), "{e}");
        assert!(!e.contains("__tls_start"), "{e}");
    }

    /// A real executable (this test binary, linked by the system linker):
    /// its PT_TLS is read (Rust's std has thread-locals), and it has none of
    /// the unikernel linker script's `__tls_*` symbols.
    #[test]
    fn real_executable_is_parsed() {
        let exe = std::env::current_exe().unwrap();
        let b = std::fs::read(&exe).unwrap();
        let elf = ElfFile64::<Endianness>::parse(&*b).unwrap();
        let (_, filesz, memsz, align) = pt_tls(&elf).expect("std's thread-locals: a PT_TLS");
        assert!(memsz >= filesz && memsz > 0 && align.is_power_of_two());
        assert!(elf.symbol_by_name("main").is_some(), "a symbol table");
        let e = check_tls(&exe).unwrap_err();
        assert!(e.contains("__tls_start is not defined"), "{e}");
    }

    #[test]
    fn not_an_elf_file() {
        let e = check_file("text", b"#!/bin/sh\necho not an image\n", check_tls).unwrap_err();
        assert!(e.contains("not a readable ELF64 image"), "{e}");
        let e = check_file("empty", b"", check_tls).unwrap_err();
        assert!(e.contains("not a readable ELF64 image"), "{e}");
        // 32-bit ELF is refused too (the old check looked at EI_CLASS).
        let mut elf32 = write_elf(None, &[]);
        elf32[4] = elf::ELFCLASS32;
        let e = check_file("elf32", &elf32, check_tls).unwrap_err();
        assert!(e.contains("not a readable ELF64 image"), "{e}");
        let e = check_tls(Path::new("/nonexistent/image.spt")).unwrap_err();
        assert!(e.contains("/nonexistent/image.spt"), "{e}");
    }

    #[test]
    fn multiboot_header() {
        // header_addr 0x100000 at file offset 0x1000, loaded from 0x100000
        // up to 0x100000 + len: the file must hold 0x1000 + len bytes.
        let mut image = vec![0u8; 0x1000];
        let flags = MULTIBOOT_AOUT_KLUDGE;
        for w in [
            MULTIBOOT_MAGIC,
            flags,
            0u32.wrapping_sub(MULTIBOOT_MAGIC.wrapping_add(flags)),
            0x10_0000,
            0x10_0000,
            0x10_0040,
        ] {
            image.extend_from_slice(&w.to_le_bytes());
        }
        image.resize(0x1040, 0);
        check_file("mb-ok", &image, check_multiboot).unwrap();
        image.truncate(0x1030);
        let e = check_file("mb-short", &image, check_multiboot).unwrap_err();
        assert!(e.contains("too short"), "{e}");
        let e = check_file("mb-none", &[0u8; 4096], check_multiboot).unwrap_err();
        assert!(e.contains("no multiboot header"), "{e}");
    }
}
