//! Crash-safe small-file writes, shared by key generation and the boot-id file.
//!
//! A key or a boot id that is half written is worse than none: a node would start with a
//! truncated key (and never join) or reuse a boot id (and have its packets dropped as
//! replays). So every file is written to a temporary name in the same directory, flushed
//! to disk, and only then given its final name in one atomic step.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What to do when the destination already exists.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Existing {
    /// Fail with [`io::ErrorKind::AlreadyExists`] and leave the old file untouched.
    Keep,
    /// Replace it atomically: readers see either the old or the new content, never a mix.
    Replace,
}

/// Writes `bytes` to `path` with permission bits `mode`, atomically and durably.
///
/// The temporary file is created with `mode` from the start (never briefly more open), its
/// data is fsynced before it is renamed (or hard-linked, for [`Existing::Keep`], so that a
/// concurrent writer can't be overwritten between a check and the rename), and the
/// directory is fsynced afterwards so the new name survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, existing: Existing) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(format!("OS random source: {e}")))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:016x}",
        name.to_string_lossy(),
        std::process::id(),
        u64::from_le_bytes(nonce)
    ));
    let result = write_then_place(&tmp, path, bytes, mode, existing);
    if result.is_err() {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(&dir)?.sync_all()
}

fn write_then_place(tmp: &Path, path: &Path, bytes: &[u8], mode: u32, existing: Existing) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(tmp)?;
    file.write_all(bytes)?;
    // The umask can only remove bits from `mode`; set them exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.sync_all()?;
    drop(file);
    match existing {
        Existing::Replace => fs::rename(tmp, path),
        Existing::Keep => match fs::hard_link(tmp, path) {
            Ok(()) => fs::remove_file(tmp),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            // Some file systems have no hard links: fall back to check-then-rename, which
            // is only racy against another writer of the same file at the same moment.
            Err(_) => {
                if fs::symlink_metadata(path).is_ok() {
                    Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"))
                } else {
                    fs::rename(tmp, path)
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the file gets exactly the content and mode, and no temporary file is left.
    #[test]
    fn writes_content_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"abc", 0o400, Existing::Keep).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o400);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    // Goal: Keep refuses an existing file and leaves it intact; Replace swaps it.
    #[test]
    fn keep_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"old").unwrap();
        let e = write_atomic(&path, b"new", 0o600, Existing::Keep).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file removed");
        write_atomic(&path, b"new", 0o600, Existing::Replace).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    // Goal: a missing directory is an error, not a panic, and creates nothing.
    #[test]
    fn missing_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/f");
        assert!(write_atomic(&path, b"x", 0o400, Existing::Keep).is_err());
    }
}
