//! Requests and responses the proxy writes itself: the ACK for a non-2xx final response
//! (RFC 3261 §17.1.1.3), a CANCEL (§9.1), and responses to requests it refuses.

use sip::{HeaderName, Message, ParseError, ResponseBuilder};

/// Writes the start line and the headers an ACK or CANCEL copies from `request`: one Via
/// (ours, the top one), Max-Forwards 70, From, To (`to` when given: the ACK takes the
/// response's To with its tag), Call-ID, CSeq with `method`, every Route, no body.
fn write_hop_request(
    request: &Message<'_>,
    method: &[u8],
    to: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Option<()> {
    let uri = request.request_uri_raw()?;
    let via = request.header(HeaderName::Via)?;
    let top_via = via.value().split(|&c| c == b',').next()?;
    let seq = request.cseq().ok()?.seq;
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(uri);
    out.extend_from_slice(b" SIP/2.0\r\nVia: ");
    out.extend_from_slice(top_via);
    out.extend_from_slice(b"\r\nMax-Forwards: 70\r\n");
    for name in [HeaderName::From, HeaderName::CallId] {
        line(out, name, request.header(name)?.value());
    }
    line(
        out,
        HeaderName::To,
        to.or_else(|| request.header(HeaderName::To).map(|h| h.value()))?,
    );
    out.extend_from_slice(b"CSeq: ");
    sip::write_decimal(out, seq);
    out.push(b' ');
    out.extend_from_slice(method);
    out.extend_from_slice(b"\r\n");
    for route in request.headers_named(HeaderName::Route) {
        line(out, HeaderName::Route, route.value());
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(())
}

fn line(out: &mut Vec<u8>, name: HeaderName, value: &[u8]) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The ACK for a non-2xx final `response` to the INVITE `request` we sent.
pub(crate) fn ack(request: &Message<'_>, response: &Message<'_>, out: &mut Vec<u8>) -> Option<()> {
    let to = response.header(HeaderName::To)?.value();
    write_hop_request(request, b"ACK", Some(to), out)
}

/// The CANCEL for the INVITE `request` we sent.
pub(crate) fn cancel(request: &Message<'_>, out: &mut Vec<u8>) -> Option<()> {
    write_hop_request(request, b"CANCEL", None, out)
}

/// A response to `request` with a reason phrase from the RFC, a To tag when the status is
/// above 100, and the extra header lines given.
pub(crate) fn response(
    request: &Message<'_>,
    status: u16,
    to_tag: &[u8],
    extra: &[(&'static str, &[u8])],
    out: &mut Vec<u8>,
) -> Result<usize, ParseError> {
    let mut builder = ResponseBuilder::new(request, status, reason(status));
    if status > 100 {
        builder = builder.to_tag(to_tag);
    }
    for &(name, value) in extra {
        builder.header(name, value);
    }
    builder.write(out)
}

/// A response to a request that did not parse, from the header lines that can be found:
/// the start line is left alone, and each line whose name is Via, From, To, Call-ID or CSeq
/// (compact forms too) is copied as received. Without a Via there is no one to answer.
pub(crate) fn salvaged_response(request: &[u8], status: u16, out: &mut Vec<u8>) -> Option<()> {
    if request.starts_with(b"SIP/") {
        return None;
    }
    let head_end = memchr_crlfcrlf(request).unwrap_or(request.len());
    let mut lines = request[..head_end].split(|&c| c == b'\n').skip(1);
    out.extend_from_slice(b"SIP/2.0 ");
    sip::write_decimal(out, u32::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status));
    out.extend_from_slice(b"\r\n");
    let mut has_via = false;
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let copy = [
            &b"via"[..],
            b"v",
            b"from",
            b"f",
            b"to",
            b"t",
            b"call-id",
            b"i",
            b"cseq",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n));
        if copy && !line.is_empty() && !line[0].is_ascii_whitespace() {
            has_via |= name.eq_ignore_ascii_case(b"via") || name.eq_ignore_ascii_case(b"v");
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    has_via.then_some(())
}

fn memchr_crlfcrlf(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The reason phrase this proxy writes for a status it generates.
pub(crate) const fn reason(status: u16) -> &'static [u8] {
    match status {
        100 => b"Trying",
        200 => b"OK",
        400 => b"Bad Request",
        401 => b"Unauthorized",
        403 => b"Forbidden",
        404 => b"Not Found",
        407 => b"Proxy Authentication Required",
        408 => b"Request Timeout",
        416 => b"Unsupported URI Scheme",
        420 => b"Bad Extension",
        423 => b"Interval Too Brief",
        480 => b"Temporarily Unavailable",
        481 => b"Call/Transaction Does Not Exist",
        482 => b"Loop Detected",
        483 => b"Too Many Hops",
        487 => b"Request Terminated",
        500 => b"Server Internal Error",
        501 => b"Not Implemented",
        502 => b"Bad Gateway",
        503 => b"Service Unavailable",
        504 => b"Server Time-out",
        505 => b"Version Not Supported",
        513 => b"Message Too Large",
        _ => b"Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unparsable_request_gets_an_answer_from_its_salvaged_lines() {
        let bad = b"INVITE sip:bob@example.com SIP/7.0\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
            Max-Forwards: 70\r\nf: <sip:a@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let mut out = Vec::new();
        salvaged_response(bad, 505, &mut out).expect("has a Via");
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "SIP/2.0 505 Version Not Supported\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
             f: <sip:a@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let mut out = Vec::new();
        assert!(
            salvaged_response(b"INVITE x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n", 400, &mut out)
                .is_none()
        );
        assert!(
            salvaged_response(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", 400, &mut Vec::new()).is_none()
        );
    }

    const INVITE: &[u8] = b"INVITE sip:bob@192.0.2.9:5070 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5061;branch=z9hG4bKours;rport\r\n\
        Via: SIP/2.0/UDP 192.0.2.50;branch=z9hG4bKtheirs\r\n\
        Max-Forwards: 69\r\nRoute: <sip:192.0.2.7;lr>\r\n\
        From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@example.com>\r\n\
        Call-ID: c1@example.com\r\nCSeq: 4294967295 INVITE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn ack_and_cancel_copy_what_rfc3261_lists() {
        let request = Message::parse(INVITE).expect("parses");
        let busy =
            b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 192.0.2.1:5061;branch=z9hG4bKours\r\n\
            From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@example.com>;tag=t9\r\n\
            Call-ID: c1@example.com\r\nCSeq: 4294967295 INVITE\r\nContent-Length: 0\r\n\r\n";
        let response = Message::parse(busy).expect("parses");
        let mut out = Vec::new();
        ack(&request, &response, &mut out).expect("builds");
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "ACK sip:bob@192.0.2.9:5070 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5061;branch=z9hG4bKours;rport\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=f1\r\nCall-ID: c1@example.com\r\n\
             To: <sip:bob@example.com>;tag=t9\r\nCSeq: 4294967295 ACK\r\n\
             Route: <sip:192.0.2.7;lr>\r\nContent-Length: 0\r\n\r\n"
        );
        let mut out = Vec::new();
        cancel(&request, &mut out).expect("builds");
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("CANCEL sip:bob@192.0.2.9:5070 SIP/2.0\r\n"));
        assert!(text.contains("\r\nTo: <sip:bob@example.com>\r\n"));
        assert!(text.contains("\r\nCSeq: 4294967295 CANCEL\r\n"));
        assert!(
            sip::Message::parse(text.as_bytes())
                .expect("parses")
                .validate()
                .is_ok()
        );
    }
}
