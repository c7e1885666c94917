//! The completion rule: what a `COMPLETED` session's data asks the merchant to do, in one place.
//!
//! Klarna's bodies come in more shapes than its guides show, and a `COMPLETED` session is paid
//! whatever its data looks like; [`Completion::from_fields`] is the one function that reads the
//! three fields, and every other part of the crate (the wire types, the simulator, persistence)
//! goes through it.

use core::fmt;

use crate::id::{AuthorizationToken, IdError, IdKind, KlarnaReference, OrderId};

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
#[non_exhaustive]
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
    /// [`IdError`] when the token is empty or over [`crate::MAX_ID_LEN`] bytes.
    pub fn authorized(authorization_token: &str) -> Result<Self, IdError> {
        Ok(Self::Authorized {
            authorization_token: AuthorizationToken::new(authorization_token)?,
        })
    }

    /// A completion with an order Klarna placed, and its reference.
    ///
    /// # Errors
    /// [`IdError`] when either id is empty or over [`crate::MAX_ID_LEN`] bytes.
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
        Self::from_values(
            authorization_token.map(Ok),
            order_id.map(Ok),
            klarna_reference.map(Ok),
        )
    }

    /// [`Completion::from_fields`] for values that may be too long to have been kept: `Err`
    /// holds the length of one (an escaped string unescaped into a bounded buffer).
    pub(crate) fn from_values(
        authorization_token: Option<Result<&str, usize>>,
        order_id: Option<Result<&str, usize>>,
        klarna_reference: Option<Result<&str, usize>>,
    ) -> Option<Self> {
        let completion = match (authorization_token, order_id, klarna_reference) {
            (None, None, None) => return None,
            (_, Some(order_id), reference) => {
                id(order_id, IdKind::OrderId, OrderId::new).and_then(|order_id| {
                    Ok(Self::OrderPlaced {
                        order_id,
                        klarna_reference: reference
                            .map(|r| id(r, IdKind::KlarnaReference, KlarnaReference::new))
                            .transpose()?,
                    })
                })
            }
            (_, None, Some(_)) => Ok(Self::Unusable(CompletionProblem::ReferenceWithoutOrder)),
            (Some(token), None, None) => {
                id(token, IdKind::AuthorizationToken, AuthorizationToken::new).map(
                    |authorization_token| Self::Authorized {
                        authorization_token,
                    },
                )
            }
        };
        Some(completion.unwrap_or_else(|e| Self::Unusable(CompletionProblem::Id(e))))
    }
}

/// The identifier `new` makes of `value`, or the [`IdError`] of a value too long to be kept.
fn id<T>(
    value: Result<&str, usize>,
    kind: IdKind,
    new: impl FnOnce(&str) -> Result<T, IdError>,
) -> Result<T, IdError> {
    new(value.map_err(|len| IdError { kind, len })?)
}

/// Why a `COMPLETED` session's data cannot be acted on ([`Completion::Unusable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CompletionProblem {
    /// No `authorization_token`, no `order_id`, no `klarna_reference`.
    Missing,
    /// A `klarna_reference` without an `order_id`.
    ReferenceWithoutOrder,
    /// A field that is empty or longer than [`crate::MAX_ID_LEN`] bytes.
    Id(IdError),
    /// The body could not be read as a session object (a field Klarna documents as a string
    /// was a number, an object or an array): only its `COMPLETED` status is known
    /// ([`crate::wire::SessionStatus::paid_snapshot`]).
    Malformed,
}

impl fmt::Display for CompletionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no authorization_token and no order_id"),
            Self::ReferenceWithoutOrder => f.write_str("a klarna_reference without an order_id"),
            Self::Id(e) => e.fmt(f),
            Self::Malformed => f.write_str("the body could not be read as a session object"),
        }
    }
}
