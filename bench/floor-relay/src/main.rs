//! floor-relay: the floor reference of `bench/run proxy`, not a proxy.
//!
//! One thread, one blocking std `UdpSocket`, no dependencies. Requests get a top
//! `Via: SIP/2.0/UDP <listen>;branch=z9hG4bK<counter>` and go to the host:port of the
//! Request-URI; responses lose their top Via value (its line, or its first comma-separated
//! value, as SIPp echoes them) and go to the sent-by of the next one.
//! Stateless and deliberately incomplete: no Record-Route, no Max-Forwards, no loop
//! detection, no received/rport, no validation. It measures what relaying a datagram
//! through user space costs on this machine, the floor below which no proxy can go.
//!
//! Usage: floor-relay 127.0.0.1:5060 [SOCKBUF]
//! SOCKBUF (default 8388608) is asked for SO_RCVBUF and SO_SNDBUF, as the other proxies of
//! the benchmark get; the kernel caps it at net.core.rmem_max / wmem_max.
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;

unsafe extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const i32, len: u32) -> i32;
}

/// SO_SNDBUF (7) and SO_RCVBUF (8) at SOL_SOCKET (1): Linux values. std has no setter.
#[allow(unsafe_code)]
fn raise_buffers(sock: &UdpSocket, size: i32) {
    for name in [7, 8] {
        // SAFETY: a valid fd and a pointer to an i32 that outlives the call.
        unsafe { setsockopt(sock.as_raw_fd(), 1, name, &size, 4) };
    }
}

fn addr(hostport: &str) -> Option<SocketAddr> {
    let has_port = hostport.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (!h.contains(':') || h.ends_with(']'))
    });
    let s = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:5060")
    };
    s.to_socket_addrs().ok()?.next()
}

/// host[:port] of a Request-URI: `METHOD sip:user@host:port;params SIP/2.0`.
fn request_target(line: &str) -> Option<SocketAddr> {
    let uri = line.split(' ').nth(1)?;
    let rest = uri.split_once(':')?.1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    addr(rest.split([';', '?', '>']).next()?)
}

fn is_via(line: &str) -> bool {
    let l = line.as_bytes();
    (l.len() > 4 && l[..4].eq_ignore_ascii_case(b"via:"))
        || (l.len() > 2 && l[..2].eq_ignore_ascii_case(b"v:"))
}

/// sent-by of the first value of a Via line: `Via: SIP/2.0/UDP host:port;params, ...`.
fn via_target(line: &str) -> Option<SocketAddr> {
    let sent_by = line.split_once(':')?.1.split_whitespace().nth(1)?;
    addr(sent_by.split([';', ',']).next()?)
}

fn main() {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5060".into());
    let sockbuf = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(8 << 20);
    let sock = UdpSocket::bind(&listen).expect("bind");
    raise_buffers(&sock, sockbuf);
    let me = sock.local_addr().expect("local_addr");
    let (mut buf, mut out, mut branch) = (vec![0u8; 65536], Vec::with_capacity(65536), 0u64);
    loop {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(msg) = std::str::from_utf8(&buf[..n]) else {
            continue;
        };
        let Some((first, rest)) = msg.split_once("\r\n") else {
            continue;
        };
        out.clear();
        let target = if first.starts_with("SIP/2.0 ") {
            // Response: drop our (top) Via value, send to the next Via's sent-by. The next
            // value is either on the same line after a comma or on the following line.
            let mut lines = rest.split("\r\n");
            let Some(top) = lines.find(|l| is_via(l)) else {
                continue;
            };
            let at = top.as_ptr() as usize - msg.as_ptr() as usize; // top Via offset
            out.extend_from_slice(&buf[..at]);
            let target = if let Some((_, others)) = top.split_once(',') {
                out.extend_from_slice(format!("Via: {}\r\n", others.trim_start()).as_bytes());
                via_target(&format!("Via: {others}"))
            } else {
                lines.next().filter(|l| is_via(l)).and_then(via_target)
            };
            out.extend_from_slice(&buf[at + top.len() + 2..n]);
            target
        } else {
            // Request: add our Via on top, send by Request-URI.
            branch += 1;
            out.extend_from_slice(first.as_bytes());
            out.extend_from_slice(
                format!("\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch}\r\n").as_bytes(),
            );
            out.extend_from_slice(rest.as_bytes());
            request_target(first)
        };
        if let Some(t) = target {
            let _ = sock.send_to(&out, t);
        }
    }
}
