//! Inputs found by the fuzz targets in `fuzz/`, kept as regression tests. Each test names
//! the target that found it and the property that failed.

use sip::{EditError, Editor, Framing, HeaderName, MAX_HEADERS, Message, Uri};

/// Checks what the `uri` target checks: a parsed URI is equivalent to itself.
fn assert_reflexive(input: &[u8]) {
    let uri = Uri::parse(input).expect("input parses");
    assert!(uri.equivalent(&uri), "{uri} is not equivalent to itself");
}

/// `uri`: a tel number longer than 64 characters compared unequal to itself.
#[test]
fn long_tel_number_is_equivalent_to_itself() {
    // The minimised input: "tEL:" followed by 65 's' (hex 74454c3a 73 * 65).
    let mut input = b"tEL:".to_vec();
    input.extend_from_slice(&[b's'; 65]);
    assert_reflexive(&input);
    let long = format!("tel:+1{}", "2".repeat(100));
    assert_reflexive(long.as_bytes());
}

/// `uri`: a repeated parameter name was compared occurrence by occurrence against the other
/// URI's first occurrence, so the second `rtE--` (no value) failed against the first (`=`).
#[test]
fn repeated_uri_parameter_is_equivalent_to_itself() {
    // The minimised input, hex 74454c3a2d3b7274452d2d3d3b7274452d2d.
    assert_reflexive(b"tEL:-;rtE--=;rtE--");
    assert_reflexive(b"sip:a@b;x=1;x=2");
    assert_reflexive(b"sip:a@b;transport=tcp;TRANSPORT=udp");
    let a = Uri::parse(b"sip:a@b;x=1;x=2").unwrap();
    let b = Uri::parse(b"sip:a@b;x=1").unwrap();
    assert!(
        a.equivalent(&b) && b.equivalent(&a),
        "the first occurrence decides"
    );
}

/// `message`: a message with `MAX_HEADERS` header lines and no Content-Length was written
/// with one more line (the added Content-Length) than the parser accepts, so the unedited
/// copy failed to parse with `TooManyHeaders`. The fuzzer's input was a 3 KB response; this
/// is the same shape, minimal: `SIP/2.0 100 ` then 96 lines `a:` and a blank line.
#[test]
fn editor_never_writes_more_headers_than_the_parser_accepts() {
    let mut input = b"SIP/2.0 100 \r\n".to_vec();
    input.extend_from_slice(&b"a:\r\n".repeat(MAX_HEADERS));
    input.extend_from_slice(b"\r\n");
    let msg = Message::parse(&input).expect("MAX_HEADERS lines parse");
    let mut out = Vec::new();
    assert_eq!(
        Editor::new(&msg).write(&mut out),
        Err(EditError::TooManyHeaders)
    );
    assert!(out.is_empty());

    // Removing a line makes room again.
    let with_subject = [&input[..14], b"Subject: x\r\n", &input[18..]].concat();
    let msg = Message::parse(&with_subject).unwrap();
    let mut editor = Editor::new(&msg);
    editor.remove_headers(HeaderName::Subject).unwrap();
    editor.write(&mut out).unwrap();
    let copy = Message::parse_framed(&out, Framing::Stream).unwrap();
    assert_eq!(copy.headers().len(), MAX_HEADERS);
    assert!(copy.header(HeaderName::Subject).is_none());

    // One line fewer leaves room for the Content-Length, and the copy parses.
    let input = &input[..input.len() - 6];
    let input = [input, b"\r\n"].concat();
    let msg = Message::parse(&input).unwrap();
    out.clear();
    Editor::new(&msg).write(&mut out).unwrap();
    let copy = Message::parse_framed(&out, Framing::Stream).unwrap();
    assert_eq!(copy.headers().len(), MAX_HEADERS);
}
