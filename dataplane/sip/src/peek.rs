//! A look at a datagram cheaper than a parse, for overload control: whether it is an
//! initial request (a request outside any dialog that starts new work) that a loaded core
//! may drop unparsed. It errs one way only: anything it is unsure of is "not initial", so
//! a response, an ACK, a CANCEL, an OPTIONS or an in-dialog request is never taken for one.

/// Whether `datagram` is surely an initial request other than ACK, CANCEL and OPTIONS: a
/// request line, and exactly one To header whose value has no `tag` anywhere in it (so a
/// URI that merely contains the letters also counts as tagged). Reads the start line and
/// the header names only up to the To header's value; never allocates.
pub fn is_initial_request(datagram: &[u8]) -> bool {
    let mut lines = Lines { rest: datagram };
    let Some(start) = lines.next() else {
        return false;
    };
    let Some(space) = memchr::memchr(b' ', start) else {
        return false;
    };
    let method = &start[..space];
    if method.is_empty()
        || !method.iter().all(u8::is_ascii_uppercase)
        || matches!(method, b"ACK" | b"CANCEL" | b"OPTIONS")
        || !start.ends_with(b"SIP/2.0")
    {
        return false;
    }
    let mut to_headers = 0;
    let mut in_to = false;
    while let Some(line) = lines.next() {
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            // A folded line continues the header above it.
            if in_to && mentions_tag(line) {
                return false;
            }
            continue;
        }
        in_to = is_to_header(line);
        if in_to {
            to_headers += 1;
            if mentions_tag(line) {
                return false;
            }
        }
    }
    to_headers == 1
}

/// Lines ending in LF, with a CR before it taken off.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(end) => (&self.rest[..end], &self.rest[end + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// `To` or its compact form `t`, any case, then optional blanks and a colon.
fn is_to_header(line: &[u8]) -> bool {
    let name_end = line
        .iter()
        .position(|&b| matches!(b, b':' | b' ' | b'\t'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !(name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t")) {
        return false;
    }
    line[name_end..]
        .iter()
        .find(|&&b| !matches!(b, b' ' | b'\t'))
        .is_some_and(|&b| b == b':')
}

fn mentions_tag(line: &[u8]) -> bool {
    line.windows(3).any(|w| w.eq_ignore_ascii_case(b"tag"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(start: &str, to: &str) -> Vec<u8> {
        format!(
            "{start}\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
             {to}\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0";

    #[test]
    fn an_untagged_invite_or_register_is_initial() {
        assert!(is_initial_request(&request(INVITE, "To: <sip:bob@x>")));
        assert!(is_initial_request(&request(
            "REGISTER sip:x SIP/2.0",
            "t :<sip:bob@x>"
        )));
        assert!(is_initial_request(
            b"INVITE sip:b@x SIP/2.0\nTO: <sip:b@x>\n\nbody with tag"
        ));
    }

    #[test]
    fn a_tag_in_any_form_or_place_makes_it_in_dialog() {
        for to in [
            "To: <sip:bob@x>;tag=abc",
            "To: <sip:bob@x> ; TAG = abc",
            "t: <sip:bob@x>;Tag=1",
            "To: <sip:bob@x>\r\n ;tag=folded",
            "To: <sip:tagore@x>",
        ] {
            assert!(!is_initial_request(&request(INVITE, to)), "{to}");
        }
    }

    #[test]
    fn responses_ack_cancel_options_and_oddities_are_never_initial() {
        assert!(!is_initial_request(&request(
            "SIP/2.0 200 OK",
            "To: <sip:b@x>"
        )));
        for method in ["ACK", "CANCEL", "OPTIONS"] {
            let start = format!("{method} sip:b@x SIP/2.0");
            assert!(!is_initial_request(&request(&start, "To: <sip:b@x>")));
        }
        // No To, two To headers, a To only after the blank line, a lower-case method.
        assert!(!is_initial_request(&request(INVITE, "X: y")));
        assert!(!is_initial_request(&request(
            INVITE,
            "To: <sip:b@x>\r\nTo: <sip:c@x>"
        )));
        assert!(!is_initial_request(
            b"INVITE sip:b@x SIP/2.0\r\n\r\nTo: <sip:b@x>\r\n"
        ));
        assert!(!is_initial_request(&request(
            "invite sip:b@x SIP/2.0",
            "To: <sip:b@x>"
        )));
        assert!(!is_initial_request(b""));
        assert!(!is_initial_request(b"INVITE"));
        assert!(!is_initial_request(&request(INVITE, "Tox: <sip:b@x>")));
    }
}
