//! Cluster key generation, as `corosync-keygen` does it (study §7.6).
//!
//! The key is raw random bytes with no header, so a key made here is a valid Corosync
//! authkey and vice versa. The size defaults to corosync-keygen's 256 bytes (2048 bits);
//! its accepted range, 128 to 4096 bytes, is also the range [`crate::crypto::Keyring`]
//! loads. Unlike corosync-keygen, which truncates and rewrites the file in place, the key
//! is written to a temporary file, flushed and renamed (see [`crate::fsutil`]): a crash
//! never leaves a short key behind, and an existing key is never replaced without `force`
//! (replacing it splits the cluster until every node has the new one).

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;
use zeroize::Zeroize;

use crate::crypto::{AUTHKEY_LEN_MAX, AUTHKEY_LEN_MIN};
use crate::fsutil::{self, Existing};

/// Where the cluster key lives unless `totem.keyfile` says otherwise (Corosync's is
/// /etc/corosync/authkey).
pub const DEFAULT_KEY_PATH: &str = "/etc/totem/authkey";

/// corosync-keygen's default key size: 256 bytes, 2048 bits.
pub const DEFAULT_KEY_LEN: usize = 256;

/// Permission bits of a key file: readable by its owner only, as corosync-keygen leaves it.
pub const KEY_FILE_MODE: u32 = 0o400;

/// Why no key was written.
#[derive(Debug, Error)]
pub enum KeygenError {
    #[error(
        "{} already exists; refusing to overwrite the cluster key. Use --force to replace it, \
         then copy the new key to every node (nodes with different keys cannot talk)",
        .path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "key size {size} is out of range: corosync-keygen accepts {AUTHKEY_LEN_MIN} to {AUTHKEY_LEN_MAX} bytes"
    )]
    Size { size: usize },
    #[error("the OS random source failed: {0}")]
    Random(String),
    #[error("directory {} does not exist; create it (mode 0700, owned by root) first", .dir.display())]
    NoDirectory { dir: PathBuf },
    #[error("cannot write {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// What [`generate_key`] wrote.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyInfo {
    pub path: PathBuf,
    pub bytes: usize,
}

/// Writes a new random key of [`DEFAULT_KEY_LEN`] bytes to `path` with mode 0400.
/// Refuses to replace an existing file unless `force`.
pub fn generate_key(path: &Path, force: bool) -> Result<KeyInfo, KeygenError> {
    generate_key_sized(path, DEFAULT_KEY_LEN, force)
}

/// [`generate_key`] with an explicit size in bytes (128 to 4096).
pub fn generate_key_sized(path: &Path, size: usize, force: bool) -> Result<KeyInfo, KeygenError> {
    if !(AUTHKEY_LEN_MIN..=AUTHKEY_LEN_MAX).contains(&size) {
        return Err(KeygenError::Size { size });
    }
    let exists = || KeygenError::Exists { path: path.to_path_buf() };
    // Checked first only for a clear message; the write itself refuses atomically too.
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(exists());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(KeygenError::NoDirectory { dir: dir.to_path_buf() });
    }
    let mut key = vec![0u8; size];
    getrandom::fill(&mut key).map_err(|e| KeygenError::Random(e.to_string()))?;
    let existing = if force { Existing::Replace } else { Existing::Keep };
    let written = fsutil::write_atomic(path, &key, KEY_FILE_MODE, existing);
    key.zeroize();
    match written {
        Ok(()) => Ok(KeyInfo { path: path.to_path_buf(), bytes: size }),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists()),
        Err(source) => Err(KeygenError::Io { path: path.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Cipher, Keyring};
    use std::os::unix::fs::PermissionsExt;

    // Goal: a new key has the default size, mode 0400, random content, and loads as a
    // cluster key.
    #[test]
    fn writes_default_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authkey");
        let info = generate_key(&path, false).unwrap();
        assert_eq!(info.bytes, DEFAULT_KEY_LEN);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), DEFAULT_KEY_LEN as u64);
        assert_eq!(meta.permissions().mode() & 0o777, 0o400);
        let key = std::fs::read(&path).unwrap();
        assert!(key.iter().any(|&b| b != key[0]), "not constant");
        Keyring::load(&path, Cipher::Aes256Siv).unwrap();
    }

    // Goal: an existing key is kept without force (with an error that says so) and
    // replaced with force, even though the old file is read-only.
    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authkey");
        generate_key(&path, false).unwrap();
        let first = std::fs::read(&path).unwrap();
        let e = generate_key(&path, false).unwrap_err();
        assert!(matches!(e, KeygenError::Exists { .. }));
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), first);
        generate_key_sized(&path, 4096, true).unwrap();
        let second = std::fs::read(&path).unwrap();
        assert_eq!(second.len(), 4096);
        assert_ne!(second[..256], first[..]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary files left");
    }

    // Goal: sizes outside corosync-keygen's range and missing directories are refused
    // without creating anything.
    #[test]
    fn rejects_bad_size_and_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authkey");
        for size in [0, 127, 4097] {
            assert!(matches!(generate_key_sized(&path, size, false), Err(KeygenError::Size { .. })));
        }
        generate_key_sized(&path, 128, false).unwrap();
        let e = generate_key(&dir.path().join("nope/authkey"), false).unwrap_err();
        assert!(matches!(e, KeygenError::NoDirectory { .. }), "{e}");
    }
}
