//! A UE on a UDP socket: REGISTER with digest credentials, and the answers it gets.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ims::auth::digest::{self, ResponseInput};
use sip::{Auth, Message};

pub(crate) const DOMAIN: &str = "example.com";
pub(crate) const ALICE: &str = "6505550000";
pub(crate) const BOB: &str = "6505550001";

/// A UE on a UDP socket of its own.
pub(crate) struct Ue {
    pub(crate) socket: UdpSocket,
    pub(crate) server: SocketAddr,
    pub(crate) user: String,
    pub(crate) cseq: u32,
    pub(crate) call_id: String,
}

/// One answer, copied out.
pub(crate) struct Answer(pub(crate) Vec<u8>);

impl Answer {
    pub(crate) fn msg(&self) -> Message<'_> {
        Message::parse(&self.0).expect("the S-CSCF's answer parses")
    }
    pub(crate) fn status(&self) -> u16 {
        self.msg().status().expect("a response")
    }
    pub(crate) fn headers(&self, name: &str) -> Vec<String> {
        self.msg()
            .headers()
            .filter(|h| h.raw_name().eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| String::from_utf8_lossy(h.value()).into_owned())
            .collect()
    }
    pub(crate) fn header(&self, name: &str) -> String {
        let values = self.headers(name);
        assert_eq!(values.len(), 1, "one {name} in\n{}", self.text());
        values[0].clone()
    }
    /// Contact values, however the lines group them.
    pub(crate) fn contact_count(&self) -> usize {
        self.msg().contacts().count()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
    pub(crate) fn nonce(&self) -> String {
        let challenge = self.header("WWW-Authenticate");
        let auth = Auth::parse(challenge.as_bytes()).expect("challenge parses");
        String::from_utf8_lossy(auth.nonce().expect("nonce")).into_owned()
    }
}

impl Ue {
    pub(crate) fn new(server: SocketAddr, user: &str) -> Self {
        Self::at(server, user, [127, 0, 0, 1])
    }

    /// A UE on its own loopback address (a per-address limit tells them apart).
    pub(crate) fn at(server: SocketAddr, user: &str, address: [u8; 4]) -> Self {
        let socket = UdpSocket::bind(std::net::SocketAddr::from((address, 0))).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Self {
            call_id: format!("reg-{user}-{}", socket.local_addr().expect("addr").port()),
            socket,
            server,
            user: user.to_owned(),
            cseq: 0,
        }
    }

    pub(crate) fn impi(&self) -> String {
        format!("{}@{DOMAIN}", self.user)
    }

    pub(crate) fn contact(&self) -> String {
        format!(
            "<sip:{}@{}>",
            self.user,
            self.socket.local_addr().expect("addr")
        )
    }

    /// Sends a REGISTER with `lines` (header lines) and returns the final answer.
    pub(crate) fn register(&mut self, lines: &[String]) -> Answer {
        self.cseq += 1;
        let me = self.socket.local_addr().expect("addr");
        let mut text = format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-{}-{};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{}@{DOMAIN}>;tag=ue\r\nTo: <sip:{}@{DOMAIN}>\r\n\
             Call-ID: {}\r\nCSeq: {} REGISTER\r\n",
            self.call_id, self.cseq, self.user, self.user, self.call_id, self.cseq
        );
        for line in lines {
            text += line;
            text += "\r\n";
        }
        text += "Content-Length: 0\r\n\r\n";
        // Retransmitted as a UE does over UDP (RFC 3261 Timer E: T1 doubling to T2): a
        // server may drop a request it judged too late to serve, as overload control does.
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut wait = Duration::from_millis(500);
        self.socket
            .send_to(text.as_bytes(), self.server)
            .expect("send");
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no final answer within 8 s to\n{text}");
            self.socket
                .set_read_timeout(Some(wait.min(left)))
                .expect("timeout");
            match self.socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let answer = Answer(buf[..n].to_vec());
                    if answer.status() >= 200 {
                        return answer;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.socket
                        .send_to(text.as_bytes(), self.server)
                        .expect("send");
                    wait = (wait * 2).min(Duration::from_secs(4));
                }
                Err(e) => panic!("receive: {e}"),
            }
        }
    }

    /// The Authorization line for `nonce` with nonce count `nc` and `password`.
    pub(crate) fn authorization(&self, nonce: &str, nc: u32, password: &str) -> String {
        self.authorization_naming(&format!("sip:{DOMAIN}"), nonce, nc, password)
    }

    /// As [`authorization`](Self::authorization), with `uri` as its digest uri.
    pub(crate) fn authorization_naming(
        &self,
        uri: &str,
        nonce: &str,
        nc: u32,
        password: &str,
    ) -> String {
        let impi = self.impi();
        let ha1 = digest::ha1(impi.as_bytes(), DOMAIN.as_bytes(), password.as_bytes());
        let nc = format!("{nc:08x}");
        let response = digest::expected_response(
            &ha1,
            &ResponseInput {
                method: b"REGISTER",
                uri: uri.as_bytes(),
                nonce: nonce.as_bytes(),
                qop: Some((b"auth", nc.as_bytes(), b"c0ffee")),
            },
        );
        format!(
            "Authorization: Digest username=\"{impi}\",realm=\"{DOMAIN}\",nonce=\"{nonce}\",\
             uri=\"{uri}\",response=\"{}\",algorithm=MD5,qop=auth,nc={nc},cnonce=\"c0ffee\"",
            String::from_utf8_lossy(&response)
        )
    }

    /// REGISTER, 401, REGISTER with credentials: the final answer.
    pub(crate) fn register_with(&mut self, password: &str, lines: &[String]) -> Answer {
        let challenge = self.register(lines);
        assert_eq!(challenge.status(), 401, "{}", challenge.text());
        let mut lines = lines.to_vec();
        lines.push(self.authorization(&challenge.nonce(), 1, password));
        self.register(&lines)
    }
}
