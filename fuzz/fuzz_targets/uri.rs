//! Parses arbitrary bytes as a URI; every URI that parses must be equivalent to itself
//! (RFC 3261 §19.1.4 comparison is not transitive, but it must be reflexive), and so must
//! its host.
#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use sip::Uri;

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = Uri::parse(data) else { return };
    let _ = black_box((uri.scheme(), uri.user(), uri.password(), uri.port(), uri.headers()));
    let _ = black_box((uri.is_sip(), uri.is_loose_route(), uri.params().iter().count()));
    assert_eq!(uri.as_bytes(), data);
    assert!(uri.equivalent(&uri), "URI not equivalent to itself");
    if let Some(host) = uri.host() {
        assert!(host.equivalent(&host), "host not equivalent to itself");
    }
    // A second parse of the same bytes is an independent value: still equivalent both ways.
    let twin = Uri::parse(data).expect("parse is deterministic");
    assert!(uri.equivalent(&twin) && twin.equivalent(&uri));
});
