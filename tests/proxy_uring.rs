//! `whitewater sprout --udp-io uring`: the same calls as over the batched path, with the
//! datagrams on each core's own io_uring — alone (the core sleeps in its ring) and beside
//! TCP connections (the core sleeps in glommio, woken by the ring's eventfd). test.sh also
//! runs the proxy and S-CSCF suites with `WW_UDP_IO=uring`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{Calls, calls_through, clean_calls_through, column, metric, start_proxy_with};

#[test]
fn two_thousand_udp_calls_on_io_uring_complete_without_retransmission() {
    let proxy = start_proxy_with(&["--udp-io", "uring"]);
    let run = Calls {
        uas_stats: true,
        ..Calls::plain(2000, 400)
    };
    let text = clean_calls_through(&proxy, &run);
    assert_eq!(metric(&text, "ww_sip_transactions_total"), 4000);
    assert_eq!(metric(&text, "ww_udp_send_errors_total"), 0);
    assert_eq!(metric(&text, "ww_sip_retransmissions_total"), 0);
}

#[test]
fn udp_on_io_uring_beside_a_tcp_connection_wakes_through_glommio() {
    let proxy = start_proxy_with(&["--udp-io", "uring"]);
    // An open TCP connection makes the core wait through glommio (its reader task needs
    // the executor), woken by the ring's eventfd when a datagram arrives.
    let mut idle = TcpStream::connect(proxy.listen).expect("connect over TCP");
    idle.write_all(b"\r\n\r\n").expect("keep-alive ping");
    let mut pong = [0u8; 2];
    idle.read_exact(&mut pong).expect("pong");
    let run = Calls {
        uas_stats: true,
        ..Calls::plain(1000, 200)
    };
    let text = clean_calls_through(&proxy, &run);
    assert_eq!(metric(&text, "ww_tcp_connections"), 1);
    assert_eq!(metric(&text, "ww_sip_retransmissions_total"), 0);
    drop(idle);
}

#[test]
fn udp_on_io_uring_recovers_lost_packets_through_retransmissions() {
    let proxy = start_proxy_with(&["--udp-io", "uring"]);
    let run = Calls {
        extra: &["-lost", "5"],
        ..Calls::plain(100, 20)
    };
    let stats = calls_through(proxy.listen, &run).uac;
    assert_eq!(column(&stats, "SuccessfulCall(C)"), 100);
    assert_eq!(column(&stats, "FailedCall(C)"), 0);
}
