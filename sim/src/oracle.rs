//! What a correct integrator must do for a history, exactly once: computed from the history
//! alone, never from a tracker.

use core::fmt;
use core::time::Duration;

use super::Text;
use super::history::History;
use hpp_session::Status;
use hpp_session::Timestamp;
use hpp_session::{AUTHORIZATION_VALIDITY, Action, ActionKind, ReleaseReason};

/// A merchant action with its data, owned: what the oracle expects and what a run saw.
/// (The disable is the integrator's own means, not an outcome: it has no counterpart.)
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expected {
    /// Place the order with this token before `place_by`.
    PlaceOrder {
        /// `authorization_token`.
        authorization_token: Text,
        /// The authorization time plus [`AUTHORIZATION_VALIDITY`] (`None`: unknown, at once).
        place_by: Option<Timestamp>,
    },
    /// Record the order Klarna placed.
    RecordOrder {
        /// `order_id`.
        order_id: Text,
        /// `klarna_reference`, when Klarna sent one.
        klarna_reference: Option<Text>,
    },
    /// A person must look: paid, with data that cannot be acted on.
    ReviewCompletion,
    /// Release the cart.
    Release(ReleaseReason),
}

impl Expected {
    /// The action's kind.
    #[must_use]
    pub const fn kind(&self) -> ActionKind {
        match self {
            Self::PlaceOrder { .. } => ActionKind::PlaceOrder,
            Self::RecordOrder { .. } => ActionKind::RecordOrder,
            Self::ReviewCompletion => ActionKind::ReviewCompletion,
            Self::Release(_) => ActionKind::Release,
        }
    }

    /// The merchant action `action` stands for, or `None` for a disable. Ids longer than a
    /// [`Text`] (never made by the simulator) are cut, so they compare unequal.
    #[must_use]
    pub fn of(action: &Action) -> Option<Self> {
        let text = |s: &str| {
            let mut t = Text::new();
            let _ = t.push_str(s.get(..t.capacity()).unwrap_or(s));
            t
        };
        Some(match action {
            Action::PlaceOrder {
                authorization_token,
                place_by,
            } => Self::PlaceOrder {
                authorization_token: text(authorization_token.expose_secret()),
                place_by: *place_by,
            },
            Action::RecordOrder {
                order_id,
                klarna_reference,
            } => Self::RecordOrder {
                order_id: text(order_id.as_str()),
                klarna_reference: klarna_reference.as_ref().map(|r| text(r.as_str())),
            },
            Action::ReviewCompletion { .. } => Self::ReviewCompletion,
            Action::Release { reason } => Self::Release(*reason),
            // The disable is the merchant's own call, never an outcome of the history; an
            // action a later `hpp-session` adds is none of the oracle's either.
            _ => return None,
        })
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PlaceOrder {
                authorization_token,
                place_by,
            } => {
                write!(f, "place_order {authorization_token}")?;
                match place_by {
                    Some(at) => write!(f, " by {at}"),
                    None => f.write_str(" at once"),
                }
            }
            Self::RecordOrder {
                order_id,
                klarna_reference: Some(reference),
            } => write!(f, "record_order {order_id} ({reference})"),
            Self::RecordOrder { order_id, .. } => write!(f, "record_order {order_id}"),
            Self::ReviewCompletion => f.write_str("review_completion"),
            Self::Release(reason) => write!(f, "release {}", reason.as_str()),
        }
    }
}

/// The one merchant action a history calls for: by how it ends.
///
/// - `COMPLETED` with an `order_id`: record that order (Klarna placed it), whatever else the
///   body carries; with a token and no order: place the order within 60 minutes of the
///   authorization; with neither: a person must look.
/// - `CANCELLED`, `DISABLED`: release the cart, for that reason.
/// - No final status: the session expires, and the cart is released then.
#[must_use]
pub fn expected(history: &History) -> Expected {
    let Some(end) = history.ending() else {
        return Expected::Release(ReleaseReason::Expired);
    };
    let fields = &history.completion;
    match end.status {
        Status::Completed => match (&fields.order_id, &fields.authorization_token) {
            (Some(order_id), _) => Expected::RecordOrder {
                order_id: order_id.clone(),
                klarna_reference: fields.klarna_reference.clone(),
            },
            (None, Some(token)) => Expected::PlaceOrder {
                authorization_token: token.clone(),
                place_by: Some(end.at.saturating_add(Duration::from_secs(60 * 60))),
            },
            (None, None) => Expected::ReviewCompletion,
        },
        Status::Cancelled => Expected::Release(ReleaseReason::Cancelled),
        // `DISABLED`, the only other final status.
        _ => Expected::Release(ReleaseReason::Disabled),
    }
}

// The spec's 60 minutes, written out above so the oracle does not lean on the crate's constant;
// this checks that the two agree.
const _: () = assert!(AUTHORIZATION_VALIDITY.as_secs() == 60 * 60);
