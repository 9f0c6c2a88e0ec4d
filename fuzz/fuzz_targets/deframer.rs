//! Feeds arbitrary bytes to a `Deframer` the way a TCP reader does: in chunks (sizes seeded by
//! the first input byte), polling after every read and discarding what it says was consumed.
//! Every framed message is parsed with stream framing and must keep its framed length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::{Deframer, Frame, Framing, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    // A small limit (256..4351 bytes) so the size check is reachable by short inputs.
    let mut deframer = Deframer::new(256 + usize::from(seed) * 16);
    let mut buf: Vec<u8> = Vec::new();
    let mut rest = stream;
    let mut step = usize::from(seed % 17) + 1;
    loop {
        let d = deframer.poll(&buf);
        assert!(d.consumed <= buf.len(), "consumed {} of {}", d.consumed, buf.len());
        match d.frame {
            Err(_) => return, // fatal for the connection
            Ok(Frame::Message { len }) => {
                assert_eq!(len, d.consumed);
                // When the full parser accepts the frame, it must agree on where it ends:
                // a disagreement would let one message smuggle another.
                if let Ok(msg) = Message::parse_framed(&buf[..len], Framing::Stream) {
                    assert_eq!(msg.as_bytes().len(), len, "deframer and parser disagree");
                }
            }
            Ok(Frame::Ping | Frame::Pong) => assert!(d.consumed > 0),
            Ok(Frame::NeedMore) => {
                assert_eq!(d.consumed, 0);
                if rest.is_empty() {
                    return;
                }
                // The next "read": vary the size deterministically, never zero.
                let n = step.min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                step = (step * 7 + usize::from(seed)) % 61 + 1;
            }
            Ok(_) => {}
        }
        buf.drain(..d.consumed);
    }
});
