//! The proxy edits of RFC 3261 §16.6–16.7 and response building, checked on exact output.

use sip::{EditError, Editor, HeaderName, Message, ResponseBuilder, ViaSpec};

const VIA: ViaSpec<'static> = ViaSpec {
    transport: b"UDP",
    host: b"[2001:db8::5]",
    port: Some(5060),
    branch: b"z9hG4bKp1",
    rport: false,
};

fn edited(
    input: &str,
    edit: impl FnOnce(&mut Editor<'_, '_, '_>) -> Result<(), EditError>,
) -> String {
    let msg = Message::parse(input.as_bytes()).expect("input parses");
    let mut editor = Editor::new(&msg);
    edit(&mut editor).expect("edit applies");
    let mut out = b"prefix:".to_vec();
    let n = editor.write(&mut out).expect("write");
    assert_eq!(n + 7, out.len(), "write reports the bytes it appended");
    String::from_utf8(out[7..].to_vec()).expect("utf-8")
}

const REQ: &str = "INVITE sip:bob@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
Route: <sip:p3.example;lr>\r\n\
Max-Forwards: 10\r\n\
X-Unknown:  ;;,,odd value \r\n\
Content-Length: 0\r\n\r\n";

#[test]
fn forward_through_a_loose_router() {
    let out = edited(REQ, |e| {
        e.add_via(VIA)?
            .decrement_max_forwards()?
            .pop_route()?
            .add_record_route(b"sip:[2001:db8::5];lr")?;
        Ok(())
    });
    assert_eq!(
        out,
        "INVITE sip:bob@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bKp1\r\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
Route: <sip:p2.example;lr>\r\n\
Route: <sip:p3.example;lr>\r\n\
Max-Forwards: 9\r\n\
X-Unknown:  ;;,,odd value \r\n\
Content-Length: 0\r\n\
Record-Route: <sip:[2001:db8::5];lr>\r\n\r\n"
    );
}

#[test]
fn strict_router_next_hop() {
    let req = "BYE sip:bob@192.0.2.4 SIP/2.0\r\nRoute: <sip:strict.example>, <sip:p2.example;lr>\r\nl: 0\r\n\r\n";
    let out = edited(req, |e| e.route_to_strict_router().map(drop));
    assert_eq!(
        out,
        "BYE sip:strict.example SIP/2.0\r\nRoute: <sip:p2.example;lr>\r\n\
Route: <sip:bob@192.0.2.4>\r\nl: 0\r\n\r\n"
    );
}

#[test]
fn request_from_a_strict_router() {
    let req = "BYE sip:me.example;lr SIP/2.0\r\nRoute: <sip:p1.example;lr>, <sip:bob@192.0.2.4>\r\nl: 0\r\n\r\n";
    let out = edited(req, |e| e.restore_request_uri_from_last_route().map(drop));
    assert_eq!(
        out,
        "BYE sip:bob@192.0.2.4 SIP/2.0\r\nRoute: <sip:p1.example;lr>\r\nl: 0\r\n\r\n"
    );
}

#[test]
fn max_forwards_and_content_length_are_added_when_absent() {
    let out = edited(
        "MESSAGE sip:b@c SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\nhello",
        |e| e.decrement_max_forwards().map(drop),
    );
    assert_eq!(
        out,
        "MESSAGE sip:b@c SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nMax-Forwards: 70\r\nContent-Length: 5\r\n\r\nhello"
    );
}

#[test]
fn exhausted_max_forwards_is_refused() {
    let msg =
        Message::parse(b"OPTIONS sip:b@c SIP/2.0\r\nMax-Forwards: 0\r\n\r\n").expect("parses");
    assert_eq!(
        Editor::new(&msg).decrement_max_forwards().err(),
        Some(EditError::MaxForwardsExhausted)
    );
}

#[test]
fn response_loses_its_top_via() {
    let rsp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP me;branch=z9hG4bKp1 , SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
Via: SIP/2.0/UDP b\r\nContent-Length: 0\r\n\r\n";
    let out = edited(rsp, |e| e.remove_top_via().map(drop));
    assert_eq!(
        out,
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b\r\nContent-Length: 0\r\n\r\n"
    );
    let last = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP me\r\nVia: SIP/2.0/UDP a\r\nl: 0\r\n\r\n";
    assert_eq!(
        edited(last, |e| e.remove_top_via().map(drop)),
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a\r\nl: 0\r\n\r\n"
    );
}

#[test]
fn header_additions_and_removals() {
    let out = edited(REQ, |e| {
        e.remove_headers(HeaderName::Route)?
            .set_request_uri(b"sip:bob@192.0.2.9")?
            .add_header("P-Asserted-Identity", b"<sip:alice@a.example>")?;
        Ok(())
    });
    assert_eq!(
        out,
        "INVITE sip:bob@192.0.2.9 SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
Max-Forwards: 10\r\n\
X-Unknown:  ;;,,odd value \r\n\
Content-Length: 0\r\n\
P-Asserted-Identity: <sip:alice@a.example>\r\n\r\n"
    );
}

#[test]
fn conflicting_edits_are_refused() {
    let msg = Message::parse(b"BYE sip:b@c SIP/2.0\r\nRoute: <sip:p;lr>\r\nl: 0\r\n\r\n")
        .expect("parses");
    let mut e = Editor::new(&msg);
    e.pop_route().expect("first pop");
    e.remove_headers(HeaderName::Route).expect("recorded");
    let mut out = Vec::new();
    assert_eq!(e.write(&mut out), Err(EditError::Overlap));
    assert!(out.is_empty(), "nothing is written on error");
    let rsp = Message::parse(b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n").expect("parses");
    assert_eq!(
        Editor::new(&rsp).pop_route().err(),
        Some(EditError::WrongKind)
    );
}

#[test]
fn response_to_a_request() {
    let req = Message::parse(
        b"INVITE sip:b@c SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP z\r\n\
Max-Forwards: 70\r\nf: <sip:a@a>;tag=1\r\nTo: <sip:b@c>\r\ni: x@y\r\nCSeq: 7 INVITE\r\nl: 0\r\n\r\n",
    )
    .expect("parses");
    let mut rsp = ResponseBuilder::new(&req, 503, b"Service Unavailable").to_tag(b"t9");
    assert!(rsp.header("Retry-After", b"5"));
    let mut out = Vec::new();
    rsp.write(&mut out).expect("write");
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        "SIP/2.0 503 Service Unavailable\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP z\r\n\
f: <sip:a@a>;tag=1\r\nTo: <sip:b@c>;tag=t9\r\ni: x@y\r\nCSeq: 7 INVITE\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n"
    );
    let mut trying = Vec::new();
    ResponseBuilder::new(&req, 100, b"Trying")
        .to_tag(b"t9")
        .write(&mut trying)
        .expect("write");
    assert!(
        String::from_utf8(trying)
            .expect("utf-8")
            .contains("To: <sip:b@c>\r\n"),
        "no tag on 100"
    );
}

#[test]
fn several_leading_routes_are_popped_across_lines() {
    let routes_after = |count: usize| {
        let out = edited(REQ, |e| e.pop_routes(count).map(drop));
        out.lines()
            .filter(|l| l.starts_with("Route:"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        routes_after(1),
        ["Route: <sip:p2.example;lr>", "Route: <sip:p3.example;lr>"]
    );
    assert_eq!(routes_after(2), ["Route: <sip:p3.example;lr>"]);
    assert!(routes_after(3).is_empty());
    assert_eq!(routes_after(0).len(), 2, "nothing popped");
    let msg = Message::parse(REQ.as_bytes()).expect("parses");
    assert_eq!(
        Editor::new(&msg).pop_routes(4).err(),
        Some(EditError::Missing(HeaderName::Route))
    );
}

#[test]
fn a_route_is_added_above_the_existing_ones() {
    let out = edited(REQ, |e| {
        e.add_route_first(b"<sip:path1.example;lr>")?
            .add_route_first(b"<sip:path2.example;lr>")
            .map(drop)
    });
    let routes: Vec<_> = out.lines().filter(|l| l.starts_with("Route:")).collect();
    assert_eq!(
        routes,
        [
            "Route: <sip:path1.example;lr>",
            "Route: <sip:path2.example;lr>",
            "Route: <sip:p1.example;lr>, <sip:p2.example;lr>",
            "Route: <sip:p3.example;lr>"
        ]
    );
}
