//! Where the supervisor learns whether the local node is quorate (the `--quorum` policy).
//!
//! Quorate means: the node's current regular configuration (its ring's members) holds a
//! strict majority of the nodelist, `2 * members > nodelist`. This is the `quorate` field of
//! the daemon's `status` (IPC and `totemctl status`). It is Corosync's votequorum with one
//! vote per node and none of its options (two_node, wait_for_all, last_man_standing,
//! auto_tie_breaker, qdevice).
//!
//! The source is a trait so that tests (and other arbiters) can stand in for the daemon:
//! [`DaemonQuorum`] asks `totemd` over its socket, [`FileQuorum`] reads a file.

use crate::client::Client;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;

/// A boxed future, so that the trait stays object-safe.
pub type QuorumFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;

/// Something that can tell whether the local node is quorate.
pub trait QuorumSource: Send {
    /// Whether the local node is quorate now. `Err` means "unknown" (e.g. the daemon is
    /// unreachable); the supervisor treats it as not quorate, as Corosync's SAM treats a
    /// quorum dispatch error.
    fn quorate(&mut self) -> QuorumFuture<'_>;

    /// A name for logs and the state file.
    fn describe(&self) -> String;
}

/// The real source: the local daemon's `status` over its Unix socket. The connection is
/// opened lazily and reopened after any failure, so the supervisor may start before the
/// daemon and survives a daemon restart.
#[derive(Debug)]
pub struct DaemonQuorum {
    socket: PathBuf,
    client: Option<Client>,
}

impl DaemonQuorum {
    pub fn new(socket: PathBuf) -> DaemonQuorum {
        DaemonQuorum { socket, client: None }
    }
}

impl QuorumSource for DaemonQuorum {
    fn quorate(&mut self) -> QuorumFuture<'_> {
        Box::pin(async move {
            if self.client.is_none() {
                self.client = Some(Client::admin(&self.socket).await.map_err(|e| e.to_string())?);
            }
            let Some(client) = &self.client else { return Err("no connection".into()) };
            match client.status().await {
                Ok(s) => Ok(s.quorate),
                Err(e) => {
                    self.client = None;
                    Err(e.to_string())
                }
            }
        })
    }

    fn describe(&self) -> String {
        format!("totemd at {}", self.socket.display())
    }
}

/// A file-driven source for tests and external arbiters: quorate while the file's trimmed
/// content is `1`, `true`, `yes` or `quorate`; anything else, or no file, is not quorate.
#[derive(Clone, Debug)]
pub struct FileQuorum {
    path: PathBuf,
}

impl FileQuorum {
    pub fn new(path: PathBuf) -> FileQuorum {
        FileQuorum { path }
    }
}

impl QuorumSource for FileQuorum {
    fn quorate(&mut self) -> QuorumFuture<'_> {
        Box::pin(async move {
            let text = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            Ok(matches!(text.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "quorate"))
        })
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

/// How long one query may take before it counts as "unknown".
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Poll `source` every `period` and publish the answer (`Err` and timeouts become
/// `false`); the first answer replaces the initial `None`. Ends when every receiver is gone.
pub async fn poll(mut source: Box<dyn QuorumSource>, period: Duration, tx: watch::Sender<Option<bool>>) {
    let mut last_error: Option<String> = None;
    loop {
        let answer = match tokio::time::timeout(QUERY_TIMEOUT, source.quorate()).await {
            Ok(Ok(q)) => {
                last_error = None;
                q
            }
            Ok(Err(e)) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!("quorum from {} unknown ({e}): not quorate", source.describe());
                    last_error = Some(e);
                }
                false
            }
            Err(_) => false,
        };
        tx.send_if_modified(|q| {
            let changed = *q != Some(answer);
            *q = Some(answer);
            changed
        });
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = tx.closed() => return,
        }
    }
}
