//! Where a request goes: the hook the IMS functions plug into, in the place of Sprout's
//! `on_rx_initial_request`. The core has already done the §16.3 checks and planned the
//! §16.4 route edits; the router chooses the targets (one, or several to fork to) or
//! refuses the request.

use std::net::SocketAddr;

use sip::{Message, Uri};

use crate::core::Protocol;
use crate::route;

/// One destination of a forwarded request: a branch of its own (§16.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where the request is sent.
    pub address: SocketAddr,
    /// UDP or TCP.
    pub protocol: Protocol,
    /// TCP was chosen only for the request's size: if TCP fails, UDP is tried
    /// (RFC 3261 §18.1.1).
    pub udp_fallback: bool,
    /// A new Request-URI for this branch (a registered contact, say); `None` keeps the
    /// request's own. Ignored when the next hop is a strict router, whose URI the
    /// Request-URI must carry.
    pub request_uri: Option<Vec<u8>>,
    /// Route values put above the request's own (a registered contact's Path), top first.
    pub routes: Vec<Vec<u8>>,
    /// Header lines added to the request on this branch (P-Asserted-Identity, say).
    pub add_headers: Vec<(&'static str, Vec<u8>)>,
    /// Headers taken off the request on this branch (credentials meant for us).
    pub remove_headers: Vec<sip::HeaderName>,
}

impl Target {
    /// A branch that sends the request to `uri` as its new Request-URI, by the transport
    /// the URI asks for. `None` when the URI does not parse or its host needs DNS.
    pub fn to_uri(uri: &[u8]) -> Option<Self> {
        let parsed = Uri::parse(uri).ok()?;
        Some(Self {
            address: route::uri_target(&parsed)?,
            protocol: route::uri_protocol(&parsed),
            udp_fallback: false,
            request_uri: Some(uri.to_vec()),
            routes: Vec::new(),
            add_headers: Vec::new(),
            remove_headers: Vec::new(),
        })
    }

    /// A branch to `uri` (the new Request-URI) through `routes` (Route values, top first,
    /// such as a registered contact's Path): sent to the top route if there is one, else
    /// to the URI. `None` when the next hop does not parse or its host needs DNS.
    pub fn via_routes(uri: &[u8], routes: Vec<Vec<u8>>) -> Option<Self> {
        let Some(top) = routes.first() else {
            return Self::to_uri(uri);
        };
        let top = sip::NameAddr::parse(top).ok()?;
        let next_hop = top.uri();
        Some(Self {
            address: route::uri_target(next_hop)?,
            protocol: route::uri_protocol(next_hop),
            udp_fallback: false,
            request_uri: Some(uri.to_vec()),
            routes,
            add_headers: Vec::new(),
            remove_headers: Vec::new(),
        })
    }
}

/// A router's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Routing {
    /// Forward to the targets pushed (none: 480 Temporarily Unavailable).
    Forward,
    /// Answer the request with this status instead.
    Reject(u16),
    /// Answer the request with this status and the header line
    /// [`Router::reject_header`] gives (a digest challenge, say): decided at once, with no
    /// transaction kept.
    RejectWith(u16),
    /// The decision needs a lookup (subscriber data, registrations): the core keeps the
    /// request in its transaction, absorbing retransmissions, and lists it in
    /// [`ProxyCore::take_deferred`](crate::ProxyCore::take_deferred); the engine decides and
    /// calls [`forward_deferred`](crate::ProxyCore::forward_deferred) or
    /// [`answer_deferred`](crate::ProxyCore::answer_deferred).
    Defer,
}

/// Chooses the targets of every request the core forwards statefully.
pub trait Router: std::fmt::Debug {
    /// `planned` is where RFC 3261 §16.4–§16.5 send `request` (its top Route, else its
    /// Request-URI); `None` when that needs DNS. Targets go into `targets`, which is empty
    /// on entry; at most [`MAX_BRANCHES`](crate::best_response::MAX_BRANCHES) are used.
    fn route(
        &mut self,
        request: &Message<'_>,
        planned: Option<Target>,
        targets: &mut Vec<Target>,
    ) -> Routing;

    /// The header line of the last [`Routing::RejectWith`] answer.
    fn reject_header(&self) -> Option<(&'static str, &[u8])> {
        None
    }
}

/// The plain proxy: the planned next hop, or 503 when there is none (a host name: DNS is
/// not done on the data plane).
#[derive(Debug, Default, Clone, Copy)]
pub struct FollowRoute;

impl Router for FollowRoute {
    fn route(
        &mut self,
        _request: &Message<'_>,
        planned: Option<Target>,
        targets: &mut Vec<Target>,
    ) -> Routing {
        match planned {
            Some(target) => {
                targets.push(target);
                Routing::Forward
            }
            None => Routing::Reject(503),
        }
    }
}
