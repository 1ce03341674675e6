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

    /// Send the same datagram to every address of `to`, in order; one result per address.
    /// The default sends them one by one; the UDP socket hands them to the kernel in one
    /// `sendmmsg` call.
    fn send_to_each(&self, buf: &[u8], to: &[SocketAddr]) -> impl Future<Output = Vec<io::Result<usize>>> {
        async move {
            let mut results = Vec::with_capacity(to.len());
            for addr in to {
                results.push(self.send_to(buf, *addr).await);
            }
            results
        }
    }

    /// A datagram that is already waiting, taken without waiting: `None` when there is none
    /// (or the transport cannot tell, as the default). Lets the runtime work through a
    /// burst of datagrams in one go instead of one wake-up each.
    fn try_recv_from(&self, _buf: &mut [u8]) -> Option<io::Result<(usize, SocketAddr)>> {
        None
    }
}

impl Transport for tokio::net::UdpSocket {
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>> {
        tokio::net::UdpSocket::send_to(self, buf, to)
    }

    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        tokio::net::UdpSocket::recv_from(self, buf)
    }

    async fn send_to_each(&self, buf: &[u8], to: &[SocketAddr]) -> Vec<io::Result<usize>> {
        let mut results = Vec::with_capacity(to.len());
        // Bounded: every round settles at least one address.
        while results.len() < to.len() {
            let rest = &to[results.len()..];
            match self.async_io(tokio::io::Interest::WRITABLE, || sendmmsg_same(self, buf, rest)).await {
                Ok(n) if n > 0 => results.extend((0..n.min(rest.len())).map(|_| Ok(buf.len()))),
                Ok(_) => results.push(Err(io::Error::other("sendmmsg sent nothing"))),
                // The datagram to the first remaining address failed; go on with the rest.
                Err(e) => results.push(Err(e)),
            }
        }
        results
    }

    fn try_recv_from(&self, buf: &mut [u8]) -> Option<io::Result<(usize, SocketAddr)>> {
        match tokio::net::UdpSocket::try_recv_from(self, buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            r => Some(r),
        }
    }
}

/// One `sendmmsg(2)`: `buf` to each address of `to`; how many went out.
fn sendmmsg_same(socket: &tokio::net::UdpSocket, buf: &[u8], to: &[SocketAddr]) -> io::Result<usize> {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use std::os::fd::AsRawFd;
    let addrs: Vec<Option<SockaddrStorage>> = to.iter().map(|a| Some(SockaddrStorage::from(*a))).collect();
    let iov = [io::IoSlice::new(buf)];
    let slices: Vec<&[io::IoSlice<'_>]> = to.iter().map(|_| &iov[..]).collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(to.len(), None);
    let sent = sendmmsg(socket.as_raw_fd(), &mut headers, &slices, &addrs, [], MsgFlags::empty())?;
    Ok(sent.count())
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
