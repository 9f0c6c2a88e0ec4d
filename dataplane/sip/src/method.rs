//! SIP methods: the ones Whitewater acts on, and any other token as an extension.

use crate::text;

/// A request method. Methods are case-sensitive (RFC 3261 §7.1), so `invite` is an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method<'a> {
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// Any other token, kept as written.
    Extension(&'a [u8]),
    /// INFO
    Info,
    /// INVITE
    Invite,
    /// MESSAGE
    Message,
    /// NOTIFY
    Notify,
    /// OPTIONS
    Options,
    /// PRACK
    Prack,
    /// PUBLISH
    Publish,
    /// REFER
    Refer,
    /// REGISTER
    Register,
    /// SUBSCRIBE
    Subscribe,
    /// UPDATE
    Update,
}

impl<'a> Method<'a> {
    /// Reads a method token; `None` when `s` is not a token.
    pub fn parse(s: &'a [u8]) -> Option<Self> {
        Some(match s {
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"CANCEL" => Self::Cancel,
            b"INFO" => Self::Info,
            b"INVITE" => Self::Invite,
            b"MESSAGE" => Self::Message,
            b"NOTIFY" => Self::Notify,
            b"OPTIONS" => Self::Options,
            b"PRACK" => Self::Prack,
            b"PUBLISH" => Self::Publish,
            b"REFER" => Self::Refer,
            b"REGISTER" => Self::Register,
            b"SUBSCRIBE" => Self::Subscribe,
            b"UPDATE" => Self::Update,
            _ if text::all_tokens(s) => Self::Extension(s),
            _ => return None,
        })
    }

    /// The method as it appears on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Self::Ack => b"ACK",
            Self::Bye => b"BYE",
            Self::Cancel => b"CANCEL",
            Self::Extension(s) => s,
            Self::Info => b"INFO",
            Self::Invite => b"INVITE",
            Self::Message => b"MESSAGE",
            Self::Notify => b"NOTIFY",
            Self::Options => b"OPTIONS",
            Self::Prack => b"PRACK",
            Self::Publish => b"PUBLISH",
            Self::Refer => b"REFER",
            Self::Register => b"REGISTER",
            Self::Subscribe => b"SUBSCRIBE",
            Self::Update => b"UPDATE",
        }
    }
}

impl std::fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}
