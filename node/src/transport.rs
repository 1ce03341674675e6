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

    /// Send every datagram of `batch` (bytes, address), in order; one result each. A buffer
    /// longer than `segment` is a run of datagrams of `segment` bytes each (the last may be
    /// shorter; see [`crate::fragment`]). The default sends them one by one; the UDP socket
    /// hands the kernel the whole batch in one `sendmmsg` call (a token visit's frames to
    /// every peer, and the token), each run as one packet (UDP GSO).
    fn send_batch(
        &self,
        batch: &[(&[u8], SocketAddr)],
        segment: usize,
    ) -> impl Future<Output = Vec<io::Result<usize>>> {
        async move {
            let mut results = Vec::with_capacity(batch.len());
            for (buf, addr) in batch {
                let mut sent = Ok(0);
                for piece in buf.chunks(segment.max(1)) {
                    sent = self.send_to(piece, *addr).await.map(|_| buf.len());
                    if sent.is_err() {
                        break;
                    }
                }
                results.push(sent);
            }
            results
        }
    }

    /// Wait for datagrams and take them into `burst` (at least one). The default takes one
    /// with `recv_from`.
    fn recv_burst(&self, burst: &mut RecvBurst) -> impl Future<Output = io::Result<()>> {
        async move {
            burst.got.clear();
            let buf = burst.buffers().first_mut().ok_or_else(|| io::Error::other("no buffer"))?;
            let (len, from) = self.recv_from(buf).await?;
            burst.got.push(Got { len, from, segment: 0 });
            Ok(())
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
    /// What the last call received, in order.
    got: Vec<Got>,
}

/// One received buffer: its length and source, and if the kernel coalesced a run of
/// datagrams into it (UDP GRO), their size (else 0).
#[derive(Debug, Clone, Copy)]
struct Got {
    len: usize,
    from: SocketAddr,
    segment: usize,
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

    /// The datagrams of the last call, with their sources (a coalesced run split again).
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.got.iter().zip(&self.bufs).flat_map(|(got, buf)| {
            let bytes = buf.get(..got.len).unwrap_or_default();
            let segment = if got.segment == 0 { bytes.len().max(1) } else { got.segment };
            bytes.chunks(segment).map(move |d| (d, got.from))
        })
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

    async fn send_batch(&self, batch: &[(&[u8], SocketAddr)], segment: usize) -> Vec<io::Result<usize>> {
        let mut results = Vec::with_capacity(batch.len());
        // Bounded: every round settles at least one datagram.
        while results.len() < batch.len() {
            let rest = &batch[results.len()..];
            let rest = &rest[..rest.len().min(SENDMMSG_MAX)];
            let gso = rest.iter().any(|(buf, _)| buf.len() > segment);
            match self
                .async_io(tokio::io::Interest::WRITABLE, || {
                    sendmmsg_batch(self, rest, gso.then_some(segment))
                })
                .await
            {
                Ok(n) if n > 0 => results.extend(rest.iter().take(n).map(|(buf, _)| Ok(buf.len()))),
                Ok(_) => results.push(Err(io::Error::other("sendmmsg sent nothing"))),
                // The first remaining datagram failed. A run the kernel would not send as
                // one packet (no GSO on this path, or a smaller MTU) goes out datagram by
                // datagram; then go on with the rest.
                Err(e) => {
                    let (run, to) = rest[0];
                    if run.len() > segment {
                        tracing::debug!("sending a run of datagrams as one failed ({e}): sent one by one");
                        let pieces: Vec<(&[u8], SocketAddr)> =
                            run.chunks(segment.max(1)).map(|p| (p, to)).collect();
                        let sent = Box::pin(Transport::send_batch(self, &pieces, usize::MAX)).await;
                        results.push(sent.into_iter().find(Result::is_err).unwrap_or(Ok(run.len())));
                    } else {
                        results.push(Err(e));
                    }
                }
            }
        }
        results
    }

    async fn recv_burst(&self, burst: &mut RecvBurst) -> io::Result<()> {
        self.async_io(tokio::io::Interest::READABLE, || {
            burst.got.clear();
            recvmmsg_burst(self, burst)
        })
        .await
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

/// One `sendmmsg(2)` of `batch`; how many datagrams went out. With `gso`, a buffer longer
/// than that is sent as a run of datagrams of that size (UDP_SEGMENT); shorter ones as they
/// are.
fn sendmmsg_batch(
    socket: &tokio::net::UdpSocket,
    batch: &[(&[u8], SocketAddr)],
    gso: Option<usize>,
) -> io::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use std::os::fd::AsRawFd;
    let addrs: Vec<Option<SockaddrStorage>> =
        batch.iter().map(|(_, a)| Some(SockaddrStorage::from(*a))).collect();
    let iovs: Vec<[io::IoSlice<'_>; 1]> = batch.iter().map(|(buf, _)| [io::IoSlice::new(buf)]).collect();
    let segment = match gso.map(u16::try_from) {
        Some(Ok(s)) => Some(s),
        // Not a size the kernel takes: the caller sends the run datagram by datagram.
        Some(Err(_)) => return Err(io::ErrorKind::InvalidInput.into()),
        None => None,
    };
    let cmsgs: Vec<ControlMessage<'_>> =
        segment.as_ref().map(ControlMessage::UdpGsoSegments).into_iter().collect();
    // Control-message room only with a message (nix would hand the kernel an empty one).
    let room = segment.map(|_| nix::cmsg_space!(u16));
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), room);
    let sent = sendmmsg(socket.as_raw_fd(), &mut headers, &iovs, &addrs, &cmsgs, MsgFlags::empty())?;
    Ok(sent.count())
}

/// One non-blocking `recvmmsg(2)` into the burst's buffers.
fn recvmmsg_burst(socket: &tokio::net::UdpSocket, burst: &mut RecvBurst) -> io::Result<()> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
    use std::os::fd::AsRawFd;
    let got: Vec<(usize, Option<SocketAddr>, usize)> = {
        let mut iovs: Vec<[io::IoSliceMut<'_>; 1]> =
            burst.buffers().iter_mut().map(|b| [io::IoSliceMut::new(b.as_mut_slice())]).collect();
        let mut headers =
            MultiHeaders::<SockaddrStorage>::preallocate(iovs.len(), Some(nix::cmsg_space!(i32)));
        recvmmsg(socket.as_raw_fd(), &mut headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?
            .map(|m| {
                // A run the kernel coalesced (UDP GRO) says the size of its datagrams.
                let segment = m
                    .cmsgs()
                    .into_iter()
                    .flatten()
                    .find_map(|c| match c {
                        ControlMessageOwned::UdpGroSegments(s) => usize::try_from(s).ok(),
                        _ => None,
                    })
                    .unwrap_or(0);
                // A truncated datagram is garbage: dropped as if it had no length.
                let len = if m.flags.contains(MsgFlags::MSG_TRUNC) { 0 } else { m.bytes };
                (len, m.address.and_then(|a: SockaddrStorage| to_socket_addr(&a)), segment)
            })
            .collect()
    };
    if got.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    // A datagram without an IPv4/IPv6 source cannot come from a node: its slot is skipped
    // by giving it no length and an unspecified source.
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    burst.got.extend(got.into_iter().map(|(len, from, segment)| match from {
        Some(from) => Got { len, from, segment },
        None => Got { len: 0, from: unspecified, segment: 0 },
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
    // Runs of datagrams come in whole (see `crate::fragment`); best effort, as without it
    // the kernel hands them over one by one.
    if let Err(e) = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::UdpGroSegment, &true) {
        tracing::debug!("could not turn on UDP GRO: {e}");
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Everything `to` receives until `n` datagrams have come (or 5 s have passed).
    async fn receive(to: &tokio::net::UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut burst = RecvBurst::new(8, 65_536);
        let mut got = Vec::new();
        for _ in 0..1000 {
            if got.len() >= n {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(5), Transport::recv_burst(to, &mut burst)).await {
                Ok(Ok(())) => got.extend(burst.datagrams().map(|(d, _)| d.to_vec())),
                Ok(Err(e)) => panic!("receive: {e}"),
                Err(_) => break,
            }
        }
        got
    }

    fn run(segment: usize, count: usize, last: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let pieces: Vec<Vec<u8>> =
            (0..count).map(|i| vec![i as u8; if i + 1 == count { last } else { segment }]).collect();
        (pieces.concat(), pieces)
    }

    /// Goal: a run goes out as its datagrams, whether the kernel takes it as one packet
    /// (GSO, and GRO on the way in) or refuses (too many segments for one packet) and the
    /// transport sends it datagram by datagram; datagrams around it keep their order.
    #[tokio::test]
    async fn a_run_arrives_as_its_datagrams_in_order() {
        let a = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let b = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let to = b.local_addr().unwrap();
        for (segment, count) in [(1452, 45), (100, 300)] {
            let (bytes, pieces) = run(segment, count, segment / 2);
            let small = vec![0xee; segment / 3];
            let batch = [(small.as_slice(), to), (bytes.as_slice(), to), (small.as_slice(), to)];
            let sent = Transport::send_batch(&a, &batch, segment).await;
            assert!(sent.iter().all(Result::is_ok), "{sent:?}");
            let mut want = vec![small.clone()];
            want.extend(pieces);
            want.push(small);
            let got = receive(&b, want.len()).await;
            assert_eq!(got.len(), want.len(), "segment {segment}");
            assert!(got == want, "segment {segment}: datagrams out of order or changed");
        }
    }
}
