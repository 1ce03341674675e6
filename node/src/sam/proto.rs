//! The wire protocol between a supervised application and its supervisor.
//!
//! The channel is a Unix stream socket whose path the supervisor hands to the child in
//! [`SOCKET_ENV`]. Framing is the one of [`crate::ipc`]: `len: u32 LE`, then `len` bytes of
//! postcard. The child sends [`ChildMsg`]s; the supervisor answers every request except
//! [`ChildMsg::Heartbeat`] and [`ChildMsg::MarkFailed`] with exactly one [`SupervisorMsg`],
//! in order, so the client needs no request ids. Any frame from the child counts as a health
//! check (Corosync: "any byte within the interval").
//!
//! Why a socket path and not an inherited descriptor: taking ownership of an inherited
//! descriptor number (`UnixStream::from_raw_fd`) is `unsafe`, and both this crate and any
//! application using it may forbid `unsafe`; a path also survives a wrapper (`sh -c`, `env`)
//! between the supervisor and the application. The supervisor authenticates the peer with
//! `SO_PEERCRED` (same user or root, and the child process or one of its descendants).

use crate::frame;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// The environment variable that carries the channel's socket path to the child.
pub const SOCKET_ENV: &str = "TOTEM_SAM_SOCKET";

/// The version the client announces in [`ChildMsg::Hello`]; the supervisor refuses others.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest block of application data the supervisor keeps (16 MiB). Corosync allows up
/// to `SSIZE_MAX`; a bound keeps a confused child from exhausting the supervisor's memory.
pub const DATA_MAX: usize = 16 * 1024 * 1024;

/// The largest frame either side accepts: the data limit plus headroom for the envelope.
pub const FRAME_MAX: usize = DATA_MAX + 4096;

/// A message from the supervised application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildMsg {
    /// First message on a connection. Reply: [`SupervisorMsg::Welcome`] or `Error`.
    Hello { version: u32, pid: u32 },
    /// The application takes part in supervision. Reply: `Registered`.
    Register,
    /// Start health checking. Reply `Ok` (with the quorum policy: only once quorate).
    Start,
    /// Stop health checking. Reply `Ok`.
    Stop,
    /// One health check. No reply.
    Heartbeat,
    /// Replace the stored data (empty = delete). Reply `Ok` or `Error`.
    DataStore(Bytes),
    /// Reply `Data` with the stored data (empty if none).
    DataGet,
    /// Reply `Size` with the stored data's length.
    DataSize,
    /// Set the first signal of the recovery sequence. Reply `Ok` or `Error`.
    WarnSignalSet(i32),
    /// Kill me now and do not restart. No reply: the answer is SIGKILL.
    MarkFailed,
}

/// How the supervisor recovers from a failure of its child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Exit with the child's status.
    Quit,
    /// Start a new instance (instance id + 1).
    Restart,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Quit => "quit",
            Policy::Restart => "restart",
        }
    }
}

/// A message from the supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupervisorMsg {
    Welcome {
        /// 1 for the first child, +1 for each restart.
        instance_id: u32,
        /// The health-check interval in milliseconds (0: only death is detected).
        interval_ms: u64,
        policy: Policy,
        quorum: bool,
    },
    Registered {
        instance_id: u32,
    },
    Ok,
    Data(Bytes),
    Size(u64),
    Error(ProtoError),
}

/// Why the supervisor refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProtoError {
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    #[error("the request is not valid in the supervisor's state: {0}")]
    BadState(String),
    #[error("data of {size} bytes is over the limit of {max}")]
    TooBig { size: u64, max: u64 },
    #[error("refused: {0}")]
    Refused(String),
}

/// Encode one frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    frame::encode(msg, FRAME_MAX)
}

/// Write one frame to a blocking stream.
pub fn write_blocking<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    w.write_all(&encode(msg)?)?;
    w.flush()
}

/// Read one frame from a blocking stream; `Ok(None)` at a clean end of stream. Never
/// allocates more than [`FRAME_MAX`], whatever the length prefix claims.
pub fn read_blocking<R: Read>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    frame::read_blocking(r, FRAME_MAX)
}

/// Read one frame from an async stream (the supervisor's side); `Ok(None)` at a clean end.
pub async fn read_async<R: tokio::io::AsyncReadExt + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    frame::read_async(r, FRAME_MAX).await
}

/// Decode a frame body.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> io::Result<T> {
    frame::decode(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: frames round-trip and a lying length prefix is refused before allocating.
    #[test]
    fn sam_frames_round_trip_and_bound_lengths() -> io::Result<()> {
        let msgs = [
            ChildMsg::Hello { version: PROTOCOL_VERSION, pid: 7 },
            ChildMsg::DataStore(Bytes::from((0..=255u8).collect::<Vec<_>>())),
            ChildMsg::WarnSignalSet(10),
        ];
        let mut buf = Vec::new();
        for m in &msgs {
            write_blocking(&mut buf, m)?;
        }
        let mut rd = &buf[..];
        for m in &msgs {
            let frame = read_blocking(&mut rd)?.ok_or_else(|| io::Error::other("early end"))?;
            assert_eq!(&decode::<ChildMsg>(&frame)?, m);
        }
        assert!(read_blocking(&mut rd)?.is_none());
        let lie = u32::MAX.to_le_bytes();
        assert!(read_blocking(&mut &lie[..]).is_err());
        Ok(())
    }
}
