//! The raw UDP ceiling (sendmmsg / recvmmsg blaster), and a poll helper.

use crate::mono_ns;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Datagrams per sendmmsg / recvmmsg call (as the anchor's udpblast).
const BATCH: usize = 32;

/// Wait until `fd` is readable or `wait` passes.
pub fn wait_readable(fd: i32, wait: Duration) {
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    unsafe {
        libc::ppoll(&mut pfd, 1, &ts, std::ptr::null());
    }
}

/// What the receiver got.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UdpReport {
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

fn big_buffers(s: &UdpSocket) {
    let size: libc::c_int = 16 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: a valid socket and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Send `size`-byte datagrams to `to` for `secs`, BATCH per sendmmsg; returns the count.
pub fn blast(to: SocketAddr, size: usize, secs: f64) -> anyhow::Result<u64> {
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
    let s = UdpSocket::bind(bind)?;
    s.connect(to)?;
    big_buffers(&s);
    let buf = vec![0x5au8; size];
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: size })
        .collect();
    // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let stop = mono_ns() + (secs * 1e9) as u64;
    let mut sent = 0u64;
    while mono_ns() < stop {
        // SAFETY: BATCH headers, each pointing at one iovec over `buf`, all alive here.
        let n = unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), BATCH as libc::c_uint, 0) };
        if n > 0 {
            sent += n as u64;
        }
    }
    Ok(sent)
}

/// Receive on `bind` until `secs` pass with nothing new for 1 s after the first datagram.
pub fn sink(bind: SocketAddr, size: usize, secs: f64) -> anyhow::Result<UdpReport> {
    let s = UdpSocket::bind(bind)?;
    big_buffers(&s);
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut bufs = vec![vec![0u8; size.max(1) + 64]; BATCH];
    let mut iov: Vec<libc::iovec> =
        bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
    // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut r = UdpReport::default();
    let hard_stop = mono_ns() + ((secs + 5.0) * 1e9) as u64;
    while mono_ns() < hard_stop {
        // SAFETY: BATCH headers over BATCH live buffers; the timeout bounds the wait.
        let n = unsafe {
            libc::recvmmsg(
                s.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let now = mono_ns();
        if n > 0 {
            if r.packets == 0 {
                r.first_ns = now;
            }
            r.last_ns = now;
            r.packets += n as u64;
            r.bytes += msgs[..n as usize].iter().map(|m| u64::from(m.msg_len)).sum::<u64>();
        } else if r.packets > 0 && now.saturating_sub(r.last_ns) > 1_000_000_000 {
            break;
        }
    }
    Ok(r)
}
