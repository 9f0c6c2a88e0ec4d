//! Who we are, where a request goes next, and the branch parameters we write.

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use arrayvec::ArrayVec;
use foldhash::fast::FixedState;
use sip::{BRANCH_COOKIE, Host, Message, Scheme, Uri};
use txn::TxnId;

use crate::core::ForkId;

/// Longest branch this proxy writes.
pub(crate) type Branch = ArrayVec<u8, 64>;

/// The hash behind loop detection, stateless branches and local tags. Every core, and a
/// request's retransmissions, must get the same value, so the seed is fixed; nothing is
/// indexed by it, so flooding is no concern, and it costs a fraction of SipHash.
const HASH: FixedState = FixedState::with_seed(0x5749_5457_4154_4552);

/// The addresses that are this proxy: one IP, the shared listening port and the per-core
/// ports above it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    pub(crate) ip: IpAddr,
    pub(crate) first_port: u16,
    pub(crate) last_port: u16,
}

impl Identity {
    pub(crate) fn is_us(&self, host: Option<Host<'_>>, port: Option<u16>, sips: bool) -> bool {
        let port = port.unwrap_or(if sips { 5061 } else { 5060 });
        let ip = match host {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return false,
        };
        ip == self.ip && (self.first_port..=self.last_port).contains(&port)
    }

    pub(crate) fn is_us_uri(&self, uri: &Uri<'_>) -> bool {
        uri.is_sip() && self.is_us(uri.host(), uri.port(), uri.scheme() == Scheme::Sips)
    }
}

/// Where a URI points, when its host is an IP literal. DNS (RFC 3263) is not done on the
/// data plane: a name gets `None` and the caller answers 503.
pub(crate) fn uri_target(uri: &Uri<'_>) -> Option<SocketAddr> {
    let default = if uri.scheme() == Scheme::Sips {
        5061
    } else {
        5060
    };
    let port = uri.port().unwrap_or(default);
    match uri.host()? {
        Host::Ipv4(ip) => Some(SocketAddr::new(IpAddr::V4(ip), port)),
        Host::Ipv6(ip) => Some(SocketAddr::new(IpAddr::V6(ip), port)),
        Host::Domain(_) => None,
    }
}

/// The transport a URI asks for: TCP with `transport=tcp`, else UDP.
pub(crate) fn uri_protocol(uri: &Uri<'_>) -> crate::core::Protocol {
    let tcp = uri
        .params()
        .get(b"transport")
        .flatten()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"tcp"));
    if tcp {
        crate::core::Protocol::Tcp
    } else {
        crate::core::Protocol::Udp
    }
}

/// The loop-detection part of a branch (RFC 3261 §16.6 step 8): a hash of what changes
/// when a request spirals rather than loops. The top Via is left out on purpose: a looped
/// request arrives with another hop's Via on top, so including it would hide every loop.
pub(crate) fn loop_hash(msg: &Message<'_>) -> u64 {
    let mut h = HASH.build_hasher();
    msg.request_uri_raw().hash(&mut h);
    msg.call_id().ok().hash(&mut h);
    msg.cseq().ok().map(|c| c.seq).hash(&mut h);
    msg.from().ok().and_then(|f| f.tag()).hash(&mut h);
    msg.to().ok().and_then(|t| t.tag()).hash(&mut h);
    for header in msg.headers_named(sip::HeaderName::ProxyRequire) {
        header.value().hash(&mut h);
    }
    for route in msg.headers_named(sip::HeaderName::Route) {
        route.value().hash(&mut h);
    }
    h.finish()
}

fn push_hex(out: &mut Branch, value: u64, min_digits: u32) {
    let digits = (64 - value.leading_zeros()).div_ceil(4).max(min_digits);
    for i in (0..digits).rev() {
        let nibble = (value >> (i * 4)) & 0xf;
        out.push(b"0123456789abcdef"[nibble as usize]);
    }
}

/// `z9hG4bK` + loop hash + `.` + core + `.` + slot + `.` + generation + `.` + fork: the
/// transaction and its branch are found from a response without a hash lookup.
pub(crate) fn stateful_branch(loop_hash: u64, core: u16, id: TxnId, fork: u8) -> Branch {
    let (index, generation) = id.to_parts();
    let mut b = Branch::new();
    b.try_extend_from_slice(BRANCH_COOKIE).expect("fits");
    push_hex(&mut b, loop_hash, 16);
    for part in [
        u64::from(core),
        u64::from(index),
        u64::from(generation),
        u64::from(fork),
    ] {
        b.push(b'.');
        push_hex(&mut b, part, 1);
    }
    b
}

/// The branch of a request forwarded without a transaction (an ACK for a 2xx, a CANCEL
/// with nothing to cancel): derived from the incoming branch, so retransmissions get the
/// same one (RFC 3261 §16.11).
pub(crate) fn stateless_branch(msg: &Message<'_>) -> Branch {
    let mut h = HASH.build_hasher();
    msg.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
    loop_hash(msg).hash(&mut h);
    let mut b = Branch::new();
    b.try_extend_from_slice(BRANCH_COOKIE).expect("fits");
    b.try_extend_from_slice(b"sl").expect("fits");
    push_hex(&mut b, h.finish(), 16);
    b
}

/// What a stateful branch says: the loop hash, the core, and the transaction's fork.
pub(crate) fn parse_stateful_branch(branch: &[u8]) -> Option<(u64, u16, ForkId)> {
    let rest = branch.strip_prefix(BRANCH_COOKIE)?;
    let mut parts = rest.split(|&c| c == b'.');
    let mut next = |max: u64| -> Option<u64> {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 16 {
            return None;
        }
        let mut v: u64 = 0;
        for &c in part {
            let d = (c as char).to_digit(16)?;
            v = v.checked_mul(16)?.checked_add(u64::from(d))?;
        }
        (v <= max).then_some(v)
    };
    let hash = next(u64::MAX)?;
    let core = next(u64::from(u16::MAX))? as u16;
    let index = next(u64::from(u32::MAX))? as u32;
    let generation = next(u64::from(u32::MAX))? as u32;
    let fork = next(u64::from(u8::MAX))? as u8;
    let id = ForkId {
        txn: TxnId::from_parts(index, generation),
        fork,
    };
    parts.next().is_none().then_some((hash, core, id))
}

/// A To tag for responses this proxy generates, stable across retransmissions of the
/// request so that each retransmission gets the same answer.
pub(crate) fn local_tag(msg: &Message<'_>) -> ArrayVec<u8, 16> {
    let mut h = HASH.build_hasher();
    msg.call_id().ok().hash(&mut h);
    msg.from().ok().and_then(|f| f.tag()).hash(&mut h);
    msg.cseq().ok().map(|c| c.seq).hash(&mut h);
    let mut b = Branch::new();
    push_hex(&mut b, h.finish(), 16);
    b.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stateful_branches_round_trip() {
        let txn = TxnId::from_parts(12345, 7);
        let b = stateful_branch(0xdead_beef, 3, txn, 2);
        assert_eq!(
            std::str::from_utf8(&b).expect("ascii"),
            "z9hG4bK00000000deadbeef.3.3039.7.2"
        );
        let id = ForkId { txn, fork: 2 };
        assert_eq!(parse_stateful_branch(&b), Some((0xdead_beef, 3, id)));
        for bad in [
            &b"z9hG4bKx.1.2.3.0"[..],
            b"z9hG4bK1.2.3.4",
            b"z9hG4bK1.2.3.4.100",
            b"z9hG4bK1.2.3.4.5.6",
            b"1.2.3.4",
        ] {
            assert_eq!(parse_stateful_branch(bad), None);
        }
    }
}
