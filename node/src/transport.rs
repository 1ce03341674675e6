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

    /// Send every datagram of `batch` (bytes, address), in order; one result each. The
    /// default sends them one by one; the UDP socket hands the kernel the whole batch in
    /// one `sendmmsg` call (a token visit's frames to every peer, and the token).
    fn send_batch(&self, batch: &[(&[u8], SocketAddr)]) -> impl Future<Output = Vec<io::Result<usize>>> {
        async move {
            let mut results = Vec::with_capacity(batch.len());
            for (buf, addr) in batch {
                results.push(self.send_to(buf, *addr).await);
            }
            results
        }
    }

    /// Datagrams that are already waiting, taken without waiting, into `burst` (at most its
    /// capacity): `None` when there is none (or the transport cannot tell, as the default).
    /// Lets the runtime work through a burst of datagrams in one go instead of one wake-up
    /// (and, for the UDP socket, one system call) each.
    fn try_recv_burst(&self, _burst: &mut RecvBurst) -> Option<io::Result<()>> {
        None
    }
}

/// Buffers for [`Transport::try_recv_burst`]: `slots` datagrams of up to `size` bytes
/// (allocated on first use, so a transport without bursts costs nothing).
#[derive(Debug)]
pub struct RecvBurst {
    slots: usize,
    size: usize,
    bufs: Vec<Vec<u8>>,
    /// Length and source of each datagram received by the last call, in order.
    got: Vec<(usize, SocketAddr)>,
}

impl RecvBurst {
    pub fn new(slots: usize, size: usize) -> RecvBurst {
        RecvBurst { slots: slots.max(1), size, bufs: Vec::new(), got: Vec::new() }
    }

    /// The buffers, allocated now if this is the first use.
    fn buffers(&mut self) -> &mut [Vec<u8>] {
        if self.bufs.is_empty() {
            self.bufs = vec![vec![0; self.size]; self.slots];
        }
        &mut self.bufs
    }

    /// The datagrams of the last call, with their sources.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.got.iter().zip(&self.bufs).map(|(&(len, from), buf)| (buf.get(..len).unwrap_or_default(), from))
    }

    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }
}

impl Transport for tokio::net::UdpSocket {
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>> {
        tokio::net::UdpSocket::send_to(self, buf, to)
    }

    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        tokio::net::UdpSocket::recv_from(self, buf)
    }

    async fn send_batch(&self, batch: &[(&[u8], SocketAddr)]) -> Vec<io::Result<usize>> {
        let mut results = Vec::with_capacity(batch.len());
        // Bounded: every round settles at least one datagram.
        while results.len() < batch.len() {
            let rest = &batch[results.len()..];
            let rest = &rest[..rest.len().min(SENDMMSG_MAX)];
            match self.async_io(tokio::io::Interest::WRITABLE, || sendmmsg_batch(self, rest)).await {
                Ok(n) if n > 0 => results.extend(rest.iter().take(n).map(|(buf, _)| Ok(buf.len()))),
                Ok(_) => results.push(Err(io::Error::other("sendmmsg sent nothing"))),
                // The first remaining datagram failed; go on with the rest.
                Err(e) => results.push(Err(e)),
            }
        }
        results
    }

    fn try_recv_burst(&self, burst: &mut RecvBurst) -> Option<io::Result<()>> {
        burst.got.clear();
        match self.try_io(tokio::io::Interest::READABLE, || recvmmsg_burst(self, burst)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => Some(Err(e)),
            Ok(()) if burst.got.is_empty() => None,
            Ok(()) => Some(Ok(())),
        }
    }
}

/// Datagrams per `sendmmsg` call at most (the kernel's UIO_MAXIOV).
const SENDMMSG_MAX: usize = 1024;

/// One `sendmmsg(2)` of `batch`; how many datagrams went out.
fn sendmmsg_batch(socket: &tokio::net::UdpSocket, batch: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use std::os::fd::AsRawFd;
    let addrs: Vec<Option<SockaddrStorage>> =
        batch.iter().map(|(_, a)| Some(SockaddrStorage::from(*a))).collect();
    let iovs: Vec<[io::IoSlice<'_>; 1]> = batch.iter().map(|(buf, _)| [io::IoSlice::new(buf)]).collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), None);
    let sent = sendmmsg(socket.as_raw_fd(), &mut headers, &iovs, &addrs, [], MsgFlags::empty())?;
    Ok(sent.count())
}

/// One non-blocking `recvmmsg(2)` into the burst's buffers.
fn recvmmsg_burst(socket: &tokio::net::UdpSocket, burst: &mut RecvBurst) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
    use std::os::fd::AsRawFd;
    let got: Vec<(usize, Option<SocketAddr>)> = {
        let mut iovs: Vec<[io::IoSliceMut<'_>; 1]> =
            burst.buffers().iter_mut().map(|b| [io::IoSliceMut::new(b.as_mut_slice())]).collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(iovs.len(), None);
        recvmmsg(socket.as_raw_fd(), &mut headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?
            .map(|m| (m.bytes, m.address.and_then(|a: SockaddrStorage| to_socket_addr(&a))))
            .collect()
    };
    if got.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    // A datagram without an IPv4/IPv6 source cannot come from a node: its slot is skipped
    // by giving it no length and an unspecified source.
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    burst.got.extend(got.into_iter().map(|(len, from)| match from {
        Some(a) => (len, a),
        None => (0, unspecified),
    }));
    Ok(())
}

fn to_socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
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
