//! One ICMP echo from inside a namespace, on a raw socket (as `ping -c 1` does, without
//! needing iputils).

use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::links::on_thread_blocking;
use crate::netlink::NetlinkError;

/// ICMP echo request and reply types (RFC 792).
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
/// Payload bytes after the 8-byte ICMP header.
const PAYLOAD_LEN: usize = 24;

/// Sequence numbers of this process's probes, so replies to an earlier, timed-out probe are
/// not taken for this one.
static NEXT_SEQ: AtomicU16 = AtomicU16::new(1);

/// Sends one ICMP echo request from namespace `ns` to `to` and waits at most `timeout` for
/// its reply: the round-trip time, or `None` when no reply came. Errors are local (the
/// namespace, the socket); `timeout` is capped at [`LAB_TIMEOUT`](super::LAB_TIMEOUT).
pub fn ping(ns: &Path, to: Ipv4Addr, timeout: Duration) -> Result<Option<Duration>, NetlinkError> {
    let path = ns.to_owned();
    let timeout = timeout.min(super::LAB_TIMEOUT - Duration::from_millis(100));
    on_thread_blocking(&ns.display().to_string(), move || {
        let file = File::open(&path)?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)?;
        echo(to, timeout)
    })
}

/// One echo from the calling thread's namespace.
#[allow(
    clippy::disallowed_methods,
    reason = "the lab (I/O side, not the sans-IO core) times a real round trip"
)]
fn echo(to: Ipv4Addr, timeout: Duration) -> io::Result<Option<Duration>> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    let id = (std::process::id() & 0xffff) as u16;
    let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
    let request = echo_request(id, seq);
    let start = Instant::now();
    socket.send_to(&request, &SockAddr::from(SocketAddrV4::new(to, 0)))?;
    let mut buf = [0u8; 1500];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match (&socket).read(&mut buf) {
            Ok(n) => {
                if is_reply(&buf[..n], to, id, seq) {
                    return Ok(Some(start.elapsed()));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// An echo request with identifier `id` and sequence number `seq`.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![ECHO_REQUEST, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend((0..PAYLOAD_LEN).map(|i| i as u8));
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// Whether `datagram` (an IPv4 packet, as a raw socket reads it) is the echo reply from
/// `from` to request (`id`, `seq`).
fn is_reply(datagram: &[u8], from: Ipv4Addr, id: u16, seq: u16) -> bool {
    let Some(&first) = datagram.first() else {
        return false;
    };
    let header_len = usize::from(first & 0x0f) * 4;
    let (Some(src), Some(icmp)) = (datagram.get(12..16), datagram.get(header_len..)) else {
        return false;
    };
    icmp.len() >= 8
        && src == from.octets()
        && icmp[0] == ECHO_REPLY
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksums_to_zero_and_reply_matches_only_its_probe() {
        let req = echo_request(0x1234, 7);
        assert_eq!(checksum(&req), 0, "a packet with its checksum sums to zero");
        let from = Ipv4Addr::new(198, 18, 0, 2);
        let mut reply = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1,
        ];
        reply.extend_from_slice(&req);
        reply[20] = ECHO_REPLY;
        assert!(is_reply(&reply, from, 0x1234, 7));
        assert!(!is_reply(&reply, from, 0x1234, 8), "another probe");
        assert!(!is_reply(&reply, Ipv4Addr::new(198, 18, 0, 3), 0x1234, 7));
        assert!(!is_reply(&reply[..24], from, 0x1234, 7), "truncated");
        assert!(!is_reply(&[], from, 0x1234, 7));
        assert!(
            !is_reply(&[0x4f; 30], from, 0x1234, 7),
            "header longer than the packet"
        );
    }
}
