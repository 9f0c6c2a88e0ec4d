//! A transaction-stateful SIP proxy (RFC 3261 §16), sans-IO.
//!
//! [`ProxyCore`] is one core's proxy: datagrams and the time go in, datagrams to send come
//! out ([`ProxyCore::transmits`]). It owns a bounded transaction table and a timer wheel;
//! it never opens a socket, reads a clock or spawns a task, which is what lets the tests
//! and the allocation benchmark drive it directly. The engine runs one per core.
//!
//! Each core has two addresses: the shared listening address (every core binds it with
//! SO_REUSEPORT; requests from upstream arrive there and responses go back from it) and the
//! core's own address (the listening port + 1 + core index). Forwarded requests leave from
//! the own address and carry it in their Via, so their responses come back to the core
//! that holds the transaction, with no lock and no hand-off between cores.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod best_response;
mod build;
mod core;
mod latency;
mod overload;
mod pool;
mod route;
pub mod router;
mod stats;

pub use crate::core::{ForkId, Protocol, ProxyConfig, ProxyCore, Socket, Transmit};
pub use latency::Latency;
pub use overload::{LoadMonitor, OverloadConfig};
pub use router::{FollowRoute, Router, Routing, Target};
pub use stats::{METHODS, Stats, class_index, method_index};
