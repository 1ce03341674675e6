//! Length-prefixed postcard frames: the wire format of both local sockets (the CPG IPC
//! socket and the SAM supervisor's). A frame is a little-endian u32 length and that many
//! bytes of postcard. Each socket has its own size limit; a reader never allocates more
//! than the limit, whatever a length prefix claims.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Encode one frame (length prefix included); refuses a body over `max` bytes.
pub fn encode<T: Serialize>(msg: &T, max: usize) -> io::Result<Vec<u8>> {
    let mut frame = Vec::new();
    encode_into(msg, max, &mut frame)?;
    Ok(frame)
}

/// Append one frame to `out` (several frames can then go out in one write).
pub fn encode_into<T: Serialize>(msg: &T, max: usize, out: &mut Vec<u8>) -> io::Result<()> {
    let body = postcard::to_stdvec(msg).map_err(|e| invalid(e.to_string()))?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l as usize <= max)
        .ok_or_else(|| invalid(format!("frame of {} bytes over the limit of {max}", body.len())))?;
    out.reserve(4 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Decode a frame body.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> io::Result<T> {
    postcard::from_bytes(body).map_err(|e| invalid(e.to_string()))
}

/// The body length a prefix announces, if within `max`.
fn body_len(prefix: [u8; 4], max: usize) -> io::Result<usize> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(invalid(format!("frame of {len} bytes over the limit of {max}")));
    }
    Ok(len)
}

/// The body of the frame at the start of `buf`, if `buf` holds all of it.
pub fn complete_body(buf: &[u8], max: usize) -> io::Result<Option<&[u8]>> {
    let Some(prefix) = buf.first_chunk::<4>() else { return Ok(None) };
    let len = body_len(*prefix, max)?;
    Ok(buf.get(4..4 + len))
}

/// Read one frame body from a blocking stream; `Ok(None)` at a clean end of stream.
pub fn read_blocking<R: Read>(r: &mut R, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut body = vec![0u8; body_len(prefix, max)?];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

/// Read one frame body from an async stream; `Ok(None)` at a clean end of stream.
pub async fn read_async<R: tokio::io::AsyncReadExt + Unpin>(
    r: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut body = vec![0u8; body_len(prefix, max)?];
    r.read_exact(&mut body).await?;
    Ok(Some(body))
}
