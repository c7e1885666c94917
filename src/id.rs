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

            /// The identifier.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;

            fn try_from(id: &str) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0.as_str() == other
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

bounded_id!(
    /// A session's `session_id`.
    SessionId,
    IdKind::SessionId
);
bounded_id!(
    /// A status callback's `event_id`, for de-duplication.
    EventId,
    IdKind::EventId
);
bounded_id!(
    /// The `authorization_token` of a completed Klarna Payments session; the merchant places
    /// the order with it within 60 minutes.
    AuthorizationToken,
    IdKind::AuthorizationToken
);
bounded_id!(
    /// The `order_id` of an order Klarna placed itself (`place_order_mode` `PLACE_ORDER` or
    /// `CAPTURE_ORDER`).
    OrderId,
    IdKind::OrderId
);
bounded_id!(
    /// The consumer-facing `klarna_reference` of an order Klarna placed.
    KlarnaReference,
    IdKind::KlarnaReference
);

/// What a `COMPLETED` session carries. Klarna's bodies come in more shapes than its guides show
/// (`SPEC.md` §6): a token alone (Klarna Payments, `place_order_mode` `NONE`), an order id with or
/// without a Klarna reference (Klarna placed the order; a Klarna Checkout session has no token),
/// or all three at once (the API reference's own sample). [`Completion::from_fields`] reads them.
///
/// A `COMPLETED` session is paid whatever its data looks like, so data the crate cannot act on is
/// kept as [`Completion::Unusable`] (a person must look) rather than rejected: a rejected read
/// would leave the cart to be released at expiry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[expect(
    clippy::large_enum_variant,
    reason = "ids are stored inline (no heap); a boxed variant would need an allocator"
)]
pub enum Completion {
    /// Paid, but the data says neither how to place the order nor which order Klarna placed.
    /// Declared first: for one status change, any usable data outranks it.
    Unusable(CompletionProblem),
    /// Klarna Payments with `place_order_mode` `NONE` (the default): the merchant places the
    /// order with this token.
    Authorized {
        /// The authorization token.
        authorization_token: AuthorizationToken,
    },
    /// Klarna placed the order (`place_order_mode` `PLACE_ORDER` or `CAPTURE_ORDER`, or a Klarna
    /// Checkout session): the merchant records it and must not place another.
    OrderPlaced {
        /// The order's id.
        order_id: OrderId,
        /// The order's consumer-facing reference, when the body has one.
        klarna_reference: Option<KlarnaReference>,
    },
}

impl Completion {
    /// A completion with an authorization token.
    ///
    /// # Errors
    /// [`IdError`] when the token is empty or over [`MAX_ID_LEN`] bytes.
    pub fn authorized(authorization_token: &str) -> Result<Self, IdError> {
        Ok(Self::Authorized {
            authorization_token: AuthorizationToken::new(authorization_token)?,
        })
    }

    /// A completion with an order Klarna placed, and its reference.
    ///
    /// # Errors
    /// [`IdError`] when either id is empty or over [`MAX_ID_LEN`] bytes.
    pub fn order_placed(order_id: &str, klarna_reference: &str) -> Result<Self, IdError> {
        Ok(Self::OrderPlaced {
            order_id: OrderId::new(order_id)?,
            klarna_reference: Some(KlarnaReference::new(klarna_reference)?),
        })
    }

    /// The completion a `COMPLETED` body's three fields describe; `None` when all three are
    /// absent (the caller decides what that means for its status).
    ///
    /// - An `order_id` means Klarna placed the order: [`Completion::OrderPlaced`], whatever else
    ///   the body carries (a token next to it is never used: placing a second order with it
    ///   could charge the consumer twice).
    /// - A `klarna_reference` without an `order_id` names an order the body does not identify:
    ///   [`CompletionProblem::ReferenceWithoutOrder`] (**ours**: the token next to it is not used,
    ///   for the same reason).
    /// - A token alone: [`Completion::Authorized`].
    /// - A field that is present but empty or over-long: [`CompletionProblem::Id`]. Never cut,
    ///   never rejected: the session is paid all the same.
    #[must_use]
    pub fn from_fields(
        authorization_token: Option<&str>,
        order_id: Option<&str>,
        klarna_reference: Option<&str>,
    ) -> Option<Self> {
        let completion = match (authorization_token, order_id, klarna_reference) {
            (None, None, None) => return None,
            (_, Some(order_id), reference) => OrderId::new(order_id).and_then(|order_id| {
                Ok(Self::OrderPlaced {
                    order_id,
                    klarna_reference: reference.map(KlarnaReference::new).transpose()?,
                })
            }),
            (_, None, Some(_)) => Ok(Self::Unusable(CompletionProblem::ReferenceWithoutOrder)),
            (Some(token), None, None) => Self::authorized(token),
        };
        Some(completion.unwrap_or_else(|e| Self::Unusable(CompletionProblem::Id(e))))
    }
}

/// Why a `COMPLETED` session's data cannot be acted on ([`Completion::Unusable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CompletionProblem {
    /// No `authorization_token`, no `order_id`, no `klarna_reference`.
    Missing,
    /// A `klarna_reference` without an `order_id`.
    ReferenceWithoutOrder,
    /// A field that is empty or longer than [`MAX_ID_LEN`] bytes.
    Id(IdError),
}

impl fmt::Display for CompletionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no authorization_token and no order_id"),
            Self::ReferenceWithoutOrder => f.write_str("a klarna_reference without an order_id"),
            Self::Id(e) => e.fmt(f),
        }
    }
}
