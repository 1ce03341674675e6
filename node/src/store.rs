//! Where a node keeps its highest ring sequence across restarts.
//!
//! The core asks for a value to be made durable ([`totem_core::Output::PersistRingSeq`])
//! and acts on no higher ring until the runtime confirms it: a restarted node must never
//! reuse a ring id. The daemon writes a file and fsyncs it; the simulator keeps the value in
//! memory that survives a simulated crash.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Durable storage of one number.
pub trait RingSeqStore {
    /// The stored value (None on a first start).
    fn load(&self) -> io::Result<Option<u64>>;
    /// Make `seq` durable before returning.
    fn store(&mut self, seq: u64) -> impl Future<Output = io::Result<()>>;
}

/// A file `ringseq` in the node's state directory, replaced atomically (write a temporary
/// file, fsync it, rename it over the old one, fsync the directory).
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
}

const FILE: &str = "ringseq";

impl FileStore {
    /// Create the directory if needed.
    pub fn open(dir: &Path) -> io::Result<FileStore> {
        std::fs::create_dir_all(dir)?;
        Ok(FileStore { dir: dir.to_path_buf() })
    }

    fn write_sync(dir: &Path, seq: u64) -> io::Result<()> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{seq}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(FILE))?;
        std::fs::File::open(dir)?.sync_all()
    }
}

impl RingSeqStore for FileStore {
    fn load(&self) -> io::Result<Option<u64>> {
        let path = self.dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a ring sequence ({e}); remove it only if this node's ring history may be forgotten", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn store(&mut self, seq: u64) -> io::Result<()> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || FileStore::write_sync(&dir, seq))
            .await
            .map_err(|e| io::Error::other(format!("persisting task failed: {e}")))?
    }
}

/// A value in memory, shared by every incarnation of a simulated node (it survives a
/// simulated crash; dropping it models losing the disk).
#[derive(Clone, Debug, Default)]
pub struct MemStore(pub Arc<Mutex<Option<u64>>>);

impl RingSeqStore for MemStore {
    fn load(&self) -> io::Result<Option<u64>> {
        self.0.lock().map(|v| *v).map_err(|_| io::Error::other("store lock poisoned"))
    }

    async fn store(&mut self, seq: u64) -> io::Result<()> {
        let mut v = self.0.lock().map_err(|_| io::Error::other("store lock poisoned"))?;
        *v = Some(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_round_trips_and_reports_garbage() {
        let dir = std::env::temp_dir().join(format!("totem-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = FileStore::open(&dir).unwrap();
        assert_eq!(s.load().unwrap(), None);
        s.store(42).await.unwrap();
        s.store(1 << 40).await.unwrap();
        assert_eq!(FileStore::open(&dir).unwrap().load().unwrap(), Some(1 << 40));
        std::fs::write(dir.join(FILE), "garbage").unwrap();
        let err = s.load().unwrap_err();
        assert!(err.to_string().contains("not a ring sequence"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
