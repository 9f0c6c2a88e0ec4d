//! What a transaction asks of its owner after each event.

use arrayvec::ArrayVec;

/// One thing the transaction user or the transport must do. The transaction never holds
/// message bytes: the owner keeps the request (client) or the latest response (server) and
/// sends it when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Client: transmit the request (first send or a retransmission).
    SendRequest,
    /// INVITE client: send the ACK for the non-2xx final response (RFC 3261 §17.1.1.3),
    /// built from the request and that response.
    SendAck,
    /// Server: transmit the latest response the transaction user gave (first send or a
    /// retransmission).
    SendResponse,
    /// Client: pass the response just received to the transaction user.
    DeliverResponse,
    /// Client: no response in time (Timer B: none at all to an INVITE; Timer F: no final one
    /// to a non-INVITE). For an INVITE the user acts as if a 408 arrived; for a non-INVITE a
    /// proxy must not send 408 upstream (RFC 4320 §4.1).
    Timeout,
    /// The transport reported a failure (RFC 3261 §17.1.4, §17.2.4); a client's user acts as
    /// if a 503 arrived.
    TransportError,
    /// INVITE server: the non-2xx final response was never acknowledged (Timer H).
    AckTimeout,
    /// The transaction is over and can be removed from its table.
    Terminated,
}

/// The actions of one event, in the order they must be carried out. No event yields more
/// than four, so they live on the stack.
pub type Actions = ArrayVec<Action, 4>;

pub(crate) fn actions<const N: usize>(list: [Action; N]) -> Actions {
    list.into_iter().collect()
}
