//! TCP through `whitewater sprout` without SIPp: a next hop that refuses the connection
//! gets the caller a 503, a keep-alive ping on a connection gets its pong, and responses go
//! back on the connection the request came in on.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::start_proxy;

fn invite(target: &str, via: &str, branch: &str) -> String {
    format!(
        "INVITE sip:bob@{target} SIP/2.0\r\n\
         Via: SIP/2.0/{via};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {branch}@test\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn status_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_next_hop_that_refuses_tcp_gets_the_caller_a_503() {
    let proxy = start_proxy();
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let uac = UdpSocket::bind("127.0.0.1:0").unwrap();
    uac.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let via = format!("UDP {}", uac.local_addr().unwrap());
    let target = format!("{closed};transport=tcp");
    uac.send_to(
        invite(&target, &via, "z9hG4bK-refused").as_bytes(),
        proxy.listen,
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let mut statuses = Vec::new();
    while !statuses.iter().any(|s: &String| !s.contains(" 100 ")) {
        let (n, _) = uac.recv_from(&mut buf).expect("an answer within 10 s");
        statuses.push(status_line(&buf[..n]));
    }
    assert_eq!(
        statuses.last().unwrap(),
        "SIP/2.0 503 Service Unavailable",
        "{statuses:?}"
    );
}

#[test]
fn tcp_keepalive_ping_gets_a_pong_and_responses_use_the_same_connection() {
    let proxy = start_proxy();
    let mut uac = TcpStream::connect(proxy.listen).unwrap();
    uac.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // RFC 5626 §4.4.1: CRLFCRLF is answered with CRLF.
    uac.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    uac.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
    // A request over TCP to a domain needing DNS is refused 503 on the same connection.
    let via = format!("TCP {}", uac.local_addr().unwrap());
    uac.write_all(invite("example.com", &via, "z9hG4bK-tcp-503").as_bytes())
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains(" 503 ") {
        let n = uac.read(&mut chunk).expect("an answer within 10 s");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
}
