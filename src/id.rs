//! Klarna's opaque identifiers, stored inline with a documented bound.

use core::fmt;

/// The most bytes any identifier may have: Klarna's bound on its strings ("at most 255
/// characters unless noted"). Identifiers are ASCII in practice, where bytes and characters agree;
/// a longer one is rejected with [`IdError`], never cut.
pub const MAX_ID_LEN: usize = 255;

/// Which identifier a [`IdError`] error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum IdKind {
    /// `session_id`.
    SessionId,
    /// `event_id` of a status callback.
    EventId,
    /// `authorization_token`.
    AuthorizationToken,
    /// `order_id`.
    OrderId,
    /// `klarna_reference`.
    KlarnaReference,
}

impl IdKind {
    /// Every identifier field.
    pub const ALL: [Self; 5] = [
        Self::SessionId,
        Self::EventId,
        Self::AuthorizationToken,
        Self::OrderId,
        Self::KlarnaReference,
    ];

    /// The wire name of the field.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SessionId => "session_id",
            Self::EventId => "event_id",
            Self::AuthorizationToken => "authorization_token",
            Self::OrderId => "order_id",
            Self::KlarnaReference => "klarna_reference",
        }
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An identifier that is empty or longer than [`MAX_ID_LEN`] bytes. Nothing was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdError {
    /// Which identifier.
    pub kind: IdKind,
    /// Its length in bytes.
    pub len: usize,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            write!(f, "{} is empty", self.kind)
        } else {
            write!(
                f,
                "{} is {} bytes long; at most {MAX_ID_LEN} are accepted",
                self.kind, self.len
            )
        }
    }
}

impl core::error::Error for IdError {}

/// An identifier type: a bounded inline string with its constructor and comparisons.
macro_rules! bounded_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        ///
        /// Opaque; at most [`MAX_ID_LEN`] bytes, never empty, stored inline.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(heapless::String<MAX_ID_LEN, u8>);

        impl $name {
            /// Which identifier this is, for errors.
            pub const KIND: IdKind = $kind;

            /// Copies `id`.
            ///
            /// # Errors
            /// [`IdError`] when `id` is empty or longer than [`MAX_ID_LEN`] bytes.
            pub fn new(id: &str) -> Result<Self, IdError> {
                let error = IdError { kind: $kind, len: id.len() };
                if id.is_empty() {
                    return Err(error);
                }
                heapless::String::try_from(id).map(Self).map_err(|_| error)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;

            fn try_from(id: &str) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0.as_str() == other
            }
        }
    };
}

/// An identifier that is not a secret: shown by `Display` and `Debug`, read with `as_str`.
macro_rules! public_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        bounded_id!($(#[$doc])* $name, $kind);

        impl $name {
            /// The identifier.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0.as_str())
            }
        }
    };
}

public_id!(
    /// A session's `session_id`.
    SessionId,
    IdKind::SessionId
);
public_id!(
    /// A status callback's `event_id`, for de-duplication.
    EventId,
    IdKind::EventId
);
bounded_id!(
    /// The `authorization_token` of a completed Klarna Payments session; the merchant places
    /// the order with it within 60 minutes.
    ///
    /// A credential: whoever holds it can place the order. So, as the `secrecy` crate does,
    /// `Debug` and `Display` never show it (they print `<redacted>`), and the only way to read
    /// it is the explicit [`AuthorizationToken::expose_secret`], which is easy to find in a
    /// review. (Serialization writes it: persistence and the owned action need it.)
    AuthorizationToken,
    IdKind::AuthorizationToken
);

impl AuthorizationToken {
    /// The token itself, for the one call that places the order (and for storing it).
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AuthorizationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for AuthorizationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizationToken(<redacted>)")
    }
}
public_id!(
    /// The `order_id` of an order Klarna placed itself (`place_order_mode` `PLACE_ORDER` or
    /// `CAPTURE_ORDER`).
    OrderId,
    IdKind::OrderId
);
public_id!(
    /// The consumer-facing `klarna_reference` of an order Klarna placed.
    KlarnaReference,
    IdKind::KlarnaReference
);
