//! The datagram transport the runtime sends and receives packets through.
//!
//! The daemon uses a real UDP socket; the cluster simulator plugs in turmoil's simulated
//! socket through the same trait, so that it runs this very runtime.

use std::io;
use std::net::SocketAddr;

/// A datagram socket.
pub trait Transport {
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>>;
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>>;
}

impl Transport for tokio::net::UdpSocket {
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>> {
        tokio::net::UdpSocket::send_to(self, buf, to)
    }

    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        tokio::net::UdpSocket::recv_from(self, buf)
    }
}

/// Bind a UDP socket for the daemon with large kernel buffers (a burst of a full window of
/// frames must not overflow the receive queue).
pub fn bind_udp(addr: SocketAddr, buffer_bytes: usize) -> io::Result<tokio::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let socket = tokio::net::UdpSocket::from_std(socket)?;
    set_buffers(&socket, buffer_bytes);
    Ok(socket)
}

/// Best effort: the kernel caps the sizes at its configured maximum.
fn set_buffers(socket: &tokio::net::UdpSocket, bytes: usize) {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(bytes) {
        tracing::debug!("could not set the receive buffer to {bytes} bytes: {e}");
    }
    if let Err(e) = sock.set_send_buffer_size(bytes) {
        tracing::debug!("could not set the send buffer to {bytes} bytes: {e}");
    }
}
