//! A block device on a file (or a block special file such as `/dev/loop0`).
//!
//! Every operation is a positioned `pread`/`pwrite` of exact length (short
//! transfers continued, `EINTR` retried), so it never moves a shared file
//! offset and needs no locking. Operations block the calling thread for the
//! duration of the I/O, like a Solo5 block hypercall.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

/// A block device backed by a file.
///
/// Its length is the file's length rounded down to a multiple of the
/// sector size (the trailing partial sector is not accessible, and a
/// warning is logged); a file shorter than one sector is refused, as Solo5
/// does. Offsets and lengths of [`read_at`](Self::read_at) and
/// [`write_at`](Self::write_at) must be multiples of the sector size, and a
/// transfer may span several sectors.
#[derive(Debug)]
pub(crate) struct FileBlock {
    file: File,
    path: PathBuf,
    sector_size: usize,
    length: u64,
    read_only: bool,
}

impl FileBlock {
    /// Opens `path` read-write, or read-only if the file cannot be written
    /// (permissions, read-only file system); see
    /// [`read_only`](Self::read_only).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `sector_size` is not a power of two of at least
    /// 512, or the file is shorter than one sector, or `path` is neither a
    /// regular file nor a block device; otherwise the error of `open`, with
    /// a message naming `path` (for instance when it does not exist).
    pub(crate) fn open(path: &Path, sector_size: usize) -> io::Result<FileBlock> {
        check_sector_size(sector_size)?;
        let (file, read_only) = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => (file, false),
            Err(e) if is_not_writable(&e) => match File::open(path) {
                Ok(file) => {
                    log::info!("block device {}: opened read-only ({e})", path.display());
                    (file, true)
                }
                Err(e) => return Err(open_error(path, e)),
            },
            Err(e) => return Err(open_error(path, e)),
        };
        Self::from_file(file, path, sector_size, read_only)
    }

    /// Opens `path` read-only, even if it could be written.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    #[cfg(test)]
    pub(crate) fn open_read_only(path: &Path, sector_size: usize) -> io::Result<FileBlock> {
        check_sector_size(sector_size)?;
        let file = File::open(path).map_err(|e| open_error(path, e))?;
        Self::from_file(file, path, sector_size, true)
    }

    fn from_file(
        mut file: File,
        path: &Path,
        sector_size: usize,
        read_only: bool,
    ) -> io::Result<FileBlock> {
        let kind = file.metadata()?.file_type();
        if !kind.is_file() && !kind.is_block_device() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "block device file {}: not a regular file nor a block device; \
                     pass a disk image, e.g. one made with `truncate -s 64M disk.img`",
                    path.display()
                ),
            ));
        }
        // Seeking to the end also works for block special files, whose
        // metadata length is 0.
        let file_len = file.seek(SeekFrom::End(0))?;
        let length = file_len - file_len % sector_size as u64;
        if length == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "block device file {} is {file_len} bytes long, shorter than one \
                     {sector_size}-byte sector; make it at least {sector_size} bytes, \
                     e.g. `truncate -s 64M {}`",
                    path.display(),
                    path.display()
                ),
            ));
        }
        if length != file_len {
            log::warn!(
                "block device file {}: its length ({file_len} bytes) is not a multiple of \
                 the sector size ({sector_size}); the last {} bytes are not accessible",
                path.display(),
                file_len - length
            );
        }
        Ok(FileBlock {
            file,
            path: path.to_owned(),
            sector_size,
            length,
            read_only,
        })
    }

    /// The sector size: the unit of offsets and lengths.
    pub(crate) fn pagesize(&self) -> usize {
        self.sector_size
    }

    /// The device's length in bytes, a multiple of [`pagesize`](Self::pagesize).
    pub(crate) fn length(&self) -> u64 {
        self.length
    }

    /// Whether the file was opened read-only; then [`write_at`](Self::write_at)
    /// fails.
    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    /// The path the device was opened from.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `buf.len()` bytes at `off`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `off` or `buf.len()` is not a multiple of the
    /// sector size, `buf` is empty, or the range goes past the end of the
    /// device; otherwise the I/O error.
    pub(crate) fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(off, buf.len())?;
        self.file
            .read_exact_at(buf, off)
            .map_err(|e| self.io_error("reading", off, buf.len(), e))
    }

    /// Writes all of `buf` at `off`.
    ///
    /// # Errors
    ///
    /// As [`read_at`](Self::read_at), and `PermissionDenied` if the device
    /// is read-only.
    pub(crate) fn write_at(&self, off: u64, buf: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "block device file {} is read-only (it could not be opened for \
                     writing); make it writable to write to it",
                    self.path.display()
                ),
            ));
        }
        self.check(off, buf.len())?;
        self.file
            .write_all_at(buf, off)
            .map_err(|e| self.io_error("writing", off, buf.len(), e))
    }

    /// Checks that `len` bytes at `off` are whole sectors within the device.
    fn check(&self, off: u64, len: usize) -> io::Result<()> {
        let ss = self.sector_size;
        let bad = |what: String| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("block device file {}: {what}", self.path.display()),
            ))
        };
        if len == 0 {
            return bad(format!(
                "a transfer of 0 bytes at offset {off}; transfer one or more {ss}-byte sectors"
            ));
        }
        if off % ss as u64 != 0 || len % ss != 0 {
            return bad(format!(
                "offset {off} and length {len} must be multiples of the sector size ({ss})"
            ));
        }
        match off.checked_add(len as u64) {
            Some(end) if end <= self.length => Ok(()),
            _ => bad(format!(
                "{len} bytes at offset {off} go past the end of the device ({} bytes)",
                self.length
            )),
        }
    }

    fn io_error(&self, what: &str, off: u64, len: usize, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!(
                "block device file {}: {what} {len} bytes at offset {off}: {e}",
                self.path.display()
            ),
        )
    }
}

fn check_sector_size(sector_size: usize) -> io::Result<()> {
    if sector_size >= 512 && sector_size.is_power_of_two() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "sector size {sector_size} is not valid: it must be a power of two of at \
                 least 512 (e.g. 512 or 4096)"
            ),
        ))
    }
}

/// Whether opening for writing failed because the file cannot be written,
/// but may still be readable.
fn is_not_writable(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        || e.kind() == io::ErrorKind::ReadOnlyFilesystem
        || e.raw_os_error() == Some(libc::ETXTBSY)
}

fn open_error(path: &Path, e: io::Error) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => {
            "; create it (e.g. `truncate -s 64M disk.img`) or fix the path in --block:NAME=PATH"
        }
        io::ErrorKind::PermissionDenied => "; it must be readable by this process",
        _ => "",
    };
    io::Error::new(
        e.kind(),
        format!(
            "cannot open block device file {}: {e}{hint}",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A file in a fresh temporary directory, removed on drop.
    struct TempFile {
        dir: PathBuf,
        path: PathBuf,
    }

    impl TempFile {
        fn new(len: u64) -> TempFile {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "mkernel-file-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("disk.img");
            File::create(&path).unwrap().set_len(len).unwrap();
            TempFile { dir, path }
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn msg<T: std::fmt::Debug>(r: io::Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn read_write_roundtrip_and_persistence() {
        let t = TempFile::new(8192);
        let dev = FileBlock::open(&t.path, 512).unwrap();
        assert_eq!(dev.pagesize(), 512);
        assert_eq!(dev.length(), 8192);
        assert!(!dev.read_only());
        assert_eq!(dev.path(), t.path);
        let data: Vec<u8> = (0..1024).map(|i| (i * 7) as u8).collect();
        dev.write_at(512, &data).unwrap();
        let mut back = vec![0u8; 1536];
        dev.read_at(0, &mut back).unwrap();
        assert_eq!(&back[..512], &[0u8; 512][..]);
        assert_eq!(&back[512..], &data[..]);
        // The last sector is reachable.
        dev.write_at(8192 - 512, &[9u8; 512]).unwrap();
        drop(dev);
        let dev = FileBlock::open(&t.path, 4096).unwrap();
        assert_eq!(dev.length(), 8192);
        let mut sector = vec![0u8; 4096];
        dev.read_at(4096, &mut sector).unwrap();
        assert_eq!(&sector[4096 - 512..], &[9u8; 512][..]);
        assert_eq!(std::fs::read(&t.path).unwrap()[512..1536], data[..]);
    }

    #[test]
    fn bad_sector_sizes() {
        let t = TempFile::new(8192);
        for ss in [0, 1, 256, 511, 768, 1000, 4097] {
            assert_eq!(
                msg(FileBlock::open(&t.path, ss)),
                format!(
                    "sector size {ss} is not valid: it must be a power of two of at least \
                     512 (e.g. 512 or 4096)"
                )
            );
        }
        for ss in [512, 1024, 2048, 4096, 8192] {
            assert_eq!(FileBlock::open(&t.path, ss).unwrap().pagesize(), ss);
        }
    }

    #[test]
    fn length_is_rounded_down() {
        let t = TempFile::new(4096 + 1000);
        assert_eq!(FileBlock::open(&t.path, 512).unwrap().length(), 4096 + 512);
        assert_eq!(FileBlock::open(&t.path, 4096).unwrap().length(), 4096);
        let dev = FileBlock::open(&t.path, 4096).unwrap();
        // The partial sector is past the end.
        assert!(dev.read_at(4096, &mut [0u8; 4096]).is_err());
    }

    #[test]
    fn shorter_than_a_sector() {
        let t = TempFile::new(4000);
        assert!(FileBlock::open(&t.path, 512).is_ok());
        let m = msg(FileBlock::open(&t.path, 4096));
        assert_eq!(
            m,
            format!(
                "block device file {} is 4000 bytes long, shorter than one 4096-byte sector; \
                 make it at least 4096 bytes, e.g. `truncate -s 64M {}`",
                t.path.display(),
                t.path.display()
            )
        );
        let empty = TempFile::new(0);
        assert!(msg(FileBlock::open(&empty.path, 512)).contains("is 0 bytes long"));
    }

    #[test]
    fn missing_file_names_the_path() {
        let t = TempFile::new(0);
        let missing = t.dir.join("nope.img");
        let e = FileBlock::open(&missing, 512).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            format!(
                "cannot open block device file {}: No such file or directory (os error 2); \
                 create it (e.g. `truncate -s 64M disk.img`) or fix the path in \
                 --block:NAME=PATH",
                missing.display()
            )
        );
        assert!(msg(FileBlock::open_read_only(&missing, 512)).contains("nope.img"));
    }

    #[test]
    fn directory_is_refused() {
        let t = TempFile::new(0);
        let m = msg(FileBlock::open_read_only(&t.dir, 512));
        assert!(
            m.ends_with("not a regular file nor a block device; pass a disk image, e.g. one made with `truncate -s 64M disk.img`"),
            "{m}"
        );
        // Read-write open of a directory fails with EISDIR.
        assert!(msg(FileBlock::open(&t.dir, 512)).contains(&t.dir.display().to_string()));
    }

    #[test]
    fn bad_ranges() {
        let t = TempFile::new(4096);
        let dev = FileBlock::open(&t.path, 512).unwrap();
        let p = t.path.display();
        let mut buf = vec![0u8; 1024];
        assert_eq!(
            msg(dev.read_at(0, &mut [])),
            format!(
                "block device file {p}: a transfer of 0 bytes at offset 0; transfer one or \
                 more 512-byte sectors"
            )
        );
        assert_eq!(
            msg(dev.read_at(100, &mut buf)),
            format!(
                "block device file {p}: offset 100 and length 1024 must be multiples of the \
                 sector size (512)"
            )
        );
        assert!(msg(dev.write_at(0, &buf[..100])).contains("length 100 must be multiples"));
        assert_eq!(
            msg(dev.read_at(3584, &mut buf)),
            format!(
                "block device file {p}: 1024 bytes at offset 3584 go past the end of the \
                 device (4096 bytes)"
            )
        );
        let huge = u64::MAX - 511;
        assert!(msg(dev.write_at(huge, &buf)).contains("go past the end"));
        // Nothing was written by the refused calls.
        assert_eq!(std::fs::read(&t.path).unwrap(), vec![0u8; 4096]);
    }

    #[test]
    fn read_only() {
        let t = TempFile::new(1024);
        std::fs::write(&t.path, [5u8; 1024]).unwrap();
        let dev = FileBlock::open_read_only(&t.path, 512).unwrap();
        assert!(dev.read_only());
        let mut buf = [0u8; 512];
        dev.read_at(512, &mut buf).unwrap();
        assert_eq!(buf, [5u8; 512]);
        let e = dev.write_at(0, &[0u8; 512]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            e.to_string(),
            format!(
                "block device file {} is read-only (it could not be opened for writing); \
                 make it writable to write to it",
                t.path.display()
            )
        );
    }

    /// `open` falls back to read-only on a file it may read but not write.
    /// Root may write anything, so the check runs on a thread whose
    /// file-system uid is `nobody` (which drops the capabilities that
    /// bypass permissions, for that thread only).
    #[test]
    fn falls_back_to_read_only() {
        use std::os::unix::fs::PermissionsExt;
        let t = TempFile::new(1024);
        std::fs::set_permissions(&t.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&t.path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let path = t.path.clone();
        let opened = std::thread::spawn(move || {
            // SAFETY: getuid only reads this thread's credentials.
            if unsafe { libc::getuid() } == 0 {
                // SAFETY: setfsuid changes only this thread's file-system
                // credentials (this short-lived test thread); it touches no
                // memory.
                unsafe { libc::setfsuid(65534) };
            }
            FileBlock::open(&path, 512)
        })
        .join()
        .unwrap();
        let dev = opened.unwrap();
        assert!(dev.read_only());
        assert_eq!(dev.length(), 1024);
        assert!(dev.write_at(0, &[1u8; 512]).is_err());
    }
}
