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

/// Append one frame to `out` (several frames can then go out in one write). The body is
/// serialized straight into `out` (a delivery's payload is copied once, not twice); on any
/// error `out` is left as it was.
pub fn encode_into<T: Serialize>(msg: &T, max: usize, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_len = postcard::serialize_with_flavor(msg, Append(out)).map(|()| out.len() - start - 4);
    let len = body_len.map_err(|e| invalid(e.to_string())).and_then(|n| {
        u32::try_from(n)
            .ok()
            .filter(|&l| l as usize <= max)
            .ok_or_else(|| invalid(format!("frame of {n} bytes over the limit of {max}")))
    });
    match len {
        Ok(len) => {
            out[start..start + 4].copy_from_slice(&len.to_le_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// A postcard output that appends to a borrowed buffer.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: frames append after what `out` holds and read back in order; a body over the
    /// limit is refused and leaves `out` exactly as it was.
    #[test]
    fn frames_append_and_a_refused_one_leaves_the_buffer_alone() -> io::Result<()> {
        let mut out = b"earlier".to_vec();
        let payloads: [Vec<u8>; 3] = [vec![], vec![7; 100], (0..=255).collect()];
        for p in &payloads {
            encode_into(p, 1024, &mut out)?;
        }
        let before = out.clone();
        assert!(encode_into(&vec![1u8; 2000], 1024, &mut out).is_err());
        assert_eq!(out, before);
        let mut rd = &out[b"earlier".len()..];
        for p in &payloads {
            let body = read_blocking(&mut rd, 1024)?.ok_or_else(|| io::Error::other("early end"))?;
            assert_eq!(&decode::<Vec<u8>>(&body)?, p);
        }
        assert!(read_blocking(&mut rd, 1024)?.is_none());
        Ok(())
    }
}
