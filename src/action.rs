//! What the merchant must do, as the tracker asks for it.

use core::fmt;
use core::time::Duration;

use crate::completion::CompletionProblem;
use crate::id::{AuthorizationToken, KlarnaReference, OrderId, SessionId};
use crate::timestamp::Timestamp;

/// How long a Klarna Payments authorization token stays valid: the order must be placed with it
/// within this time after authorization ([`Action::PlaceOrder`]'s `place_by`).
pub const AUTHORIZATION_VALIDITY: Duration = Duration::from_secs(60 * 60);

/// When the token of an authorization at `authorized_at` dies: [`AUTHORIZATION_VALIDITY`] later.
/// An order placed at that instant or after is refused (Klarna: `NOT_FOUND`, invalid
/// authorization token). The one place the token's hour is computed.
#[must_use]
pub fn place_by(authorized_at: Timestamp) -> Timestamp {
    authorized_at.saturating_add(AUTHORIZATION_VALIDITY)
}

/// Why the cart is released: the session ended without payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ReleaseReason {
    /// The consumer cancelled.
    Cancelled,
    /// The merchant disabled the session.
    Disabled,
    /// The session expired (a read answered 404 at or after `expires_at`).
    Expired,
}

impl ReleaseReason {
    /// `"CANCELLED"`, `"DISABLED"` or `"EXPIRED"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "CANCELLED",
            Self::Disabled => "DISABLED",
            Self::Expired => "EXPIRED",
        }
    }
}

impl fmt::Display for ReleaseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing the merchant must do. A [`crate::Tracker`] asks for each kind at most once per
/// session, and keeps it owed ([`crate::Tracker::actions`]) until the caller reports it done
/// ([`crate::Tracker::done`]): a tracker stored with what it owes loses nothing across a dropped
/// value, a crash or a restore.
///
/// Owned, and with the `serde` feature serialized in one form: `{"kind": "place_order",
/// fields…}` with the wire names of its fields. [`Action::id`] is its stable id,
/// `"{session_id}/{kind}"`: a session asks for each kind once, so the id names the action across
/// retries and restarts (an idempotency key for the shop's side of it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[expect(
    clippy::large_enum_variant,
    reason = "ids are stored inline (no heap); a boxed variant would need an allocator"
)]
pub enum Action {
    /// Place the order with this authorization token before `place_by`.
    PlaceOrder {
        /// The token from the confirmed `COMPLETED` session (a secret: see
        /// [`AuthorizationToken::expose_secret`]).
        authorization_token: AuthorizationToken,
        /// The authorization time (`updated_at`) plus [`AUTHORIZATION_VALIDITY`] ([`place_by`]):
        /// an order placed at that instant or later is refused. `None` when the body did not
        /// say when the consumer was authorized: place the order at once. Already past (your
        /// executor was down): try anyway, Klarna decides; when it refuses the dead token,
        /// report the action done and handle the refusal as your shop does a failed payment
        /// (the tracker cannot place it for you, and asking again would not help).
        place_by: Option<Timestamp>,
    },
    /// Record the order Klarna placed. Never place another: Klarna already did.
    RecordOrder {
        /// The order's id.
        order_id: OrderId,
        /// The order's consumer-facing reference, when Klarna sent one.
        klarna_reference: Option<KlarnaReference>,
    },
    /// A person must look at this session: it is paid (`COMPLETED` was confirmed), but its data
    /// says neither how to place the order nor which order Klarna placed. The cart is never
    /// released.
    ReviewCompletion {
        /// What is wrong with the data.
        problem: CompletionProblem,
    },
    /// Release the cart: the session ended without payment.
    Release {
        /// How it ended.
        reason: ReleaseReason,
    },
    /// Disable the session at Klarna (`DELETE`): it showed no confirmed sign of life for the
    /// configured [`abandon_after`](crate::TrackerConfig::abandon_after). Report Klarna's answer
    /// with [`crate::Tracker::observe_disable_answer`], which also marks it done: a 204 shows the
    /// session `DISABLED` (the cart is released); a 400 (the consumer paid, or cancelled,
    /// meanwhile) leaves it to the read [`crate::Tracker::next_read`] asks for at once. Any
    /// other answer (429, 5xx, a timeout) tells nothing: keep it owed and try again later; if
    /// you decide not to disable after all, report it [`crate::Tracker::done`].
    Disable,
}

impl Action {
    /// The action's stable id, `"{session_id}/{kind}"` (e.g. `"39a1…/place_order"`): what an
    /// executor de-duplicates performs by, and what an idempotency key can be made of.
    #[must_use]
    pub const fn id<'s>(&self, session_id: &'s SessionId) -> ActionId<'s> {
        ActionId {
            session_id,
            kind: self.kind(),
        }
    }

    /// The action's kind.
    #[must_use]
    pub const fn kind(&self) -> ActionKind {
        match self {
            Self::PlaceOrder { .. } => ActionKind::PlaceOrder,
            Self::RecordOrder { .. } => ActionKind::RecordOrder,
            Self::ReviewCompletion { .. } => ActionKind::ReviewCompletion,
            Self::Release { .. } => ActionKind::Release,
            Self::Disable => ActionKind::Disable,
        }
    }
}

/// The stable id of one session's action of one kind: `Display` writes `"{session_id}/{kind}"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActionId<'s> {
    /// The session.
    pub session_id: &'s SessionId,
    /// The kind: a session asks for each at most once.
    pub kind: ActionKind,
}

impl<'s> ActionId<'s> {
    /// The id of session `session_id`'s action of `kind`.
    #[must_use]
    pub const fn new(session_id: &'s SessionId, kind: ActionKind) -> Self {
        Self { session_id, kind }
    }
}

impl fmt::Display for ActionId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.session_id, self.kind.as_str())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PlaceOrder {
                authorization_token,
                place_by,
            } => {
                write!(f, "place the order with {authorization_token}")?;
                match place_by {
                    Some(at) => write!(f, " by {at}"),
                    None => f.write_str(" at once (authorization time unknown)"),
                }
            }
            Self::RecordOrder {
                order_id,
                klarna_reference,
            } => {
                write!(f, "record order {order_id}")?;
                match klarna_reference {
                    Some(reference) => write!(f, " ({reference})"),
                    None => Ok(()),
                }
            }
            Self::ReviewCompletion { problem } => {
                write!(f, "a person must review this paid session: {problem}")
            }
            Self::Release { reason } => write!(f, "release the cart ({reason})"),
            Self::Disable => f.write_str("disable the session, and report Klarna's answer"),
        }
    }
}

/// The kinds of [`Action`], in the order a tracker lists them: money first (what a token's hour
/// binds), then the cart, then the disable; `Ord` is that order. The discriminants are the bits
/// of an [`ActionSet`] (stored by persistence), not the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum ActionKind {
    /// [`Action::PlaceOrder`].
    PlaceOrder = 1,
    /// [`Action::RecordOrder`].
    RecordOrder = 2,
    /// [`Action::ReviewCompletion`].
    ReviewCompletion = 16,
    /// [`Action::Release`].
    Release = 4,
    /// [`Action::Disable`].
    Disable = 32,
}

impl ActionKind {
    /// Every kind, in report order.
    pub const ALL: [Self; 5] = [
        Self::PlaceOrder,
        Self::RecordOrder,
        Self::ReviewCompletion,
        Self::Release,
        Self::Disable,
    ];

    /// The kind's place in report order.
    const fn rank(self) -> u8 {
        match self {
            Self::PlaceOrder => 0,
            Self::RecordOrder => 1,
            Self::ReviewCompletion => 2,
            Self::Release => 3,
            Self::Disable => 4,
        }
    }

    /// Whether the kind is about money the consumer paid: placing or recording the order, or a
    /// person's review of a paid session.
    #[must_use]
    pub const fn is_money(self) -> bool {
        matches!(
            self,
            Self::PlaceOrder | Self::RecordOrder | Self::ReviewCompletion
        )
    }

    /// The kind's name in the replay tool's JSON (`"place_order"`, …).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PlaceOrder => "place_order",
            Self::RecordOrder => "record_order",
            Self::ReviewCompletion => "review_completion",
            Self::Release => "release",
            Self::Disable => "disable",
        }
    }

    /// The kind named `name` ([`ActionKind::as_str`]), if any: what an executor that stored an
    /// action id `"{session_id}/{kind}"` reads back.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl PartialOrd for ActionKind {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ActionKind {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// A set of [`ActionKind`]s, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ActionSet(u8);

impl ActionSet {
    /// No action.
    pub const EMPTY: Self = Self(0);

    /// Whether `kind` is in the set.
    #[must_use]
    pub const fn contains(self, kind: ActionKind) -> bool {
        self.0 & kind as u8 != 0
    }

    /// The set with `kind` added.
    #[must_use]
    pub const fn with(self, kind: ActionKind) -> Self {
        Self(self.0 | kind as u8)
    }

    /// The kinds in `self` but not in `other`.
    #[must_use]
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// `self` and `other` together.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether the set is empty.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits (for persistence).
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The set with these bits, or `None` if a bit names no kind.
    #[must_use]
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !Self::EVERY == 0 {
            Some(Self(bits))
        } else {
            None
        }
    }

    /// The bits of every kind.
    const EVERY: u8 = ActionKind::PlaceOrder as u8
        | ActionKind::RecordOrder as u8
        | ActionKind::ReviewCompletion as u8
        | ActionKind::Release as u8
        | ActionKind::Disable as u8;

    /// How many kinds the set holds.
    #[must_use]
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The kinds in the set, in report order.
    pub fn iter(self) -> impl Iterator<Item = ActionKind> + Clone {
        ActionKind::ALL
            .into_iter()
            .filter(move |&k| self.contains(k))
    }
}

/// Klarna's answer to the merchant's `DELETE` of an HPP session ([`Action::Disable`]), as
/// [`crate::Tracker::observe_disable_answer`] takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisableAnswer {
    /// 204: the session is `DISABLED` from now on. Authenticated evidence of the final status
    /// (undated: the answer does not say when it changed).
    Disabled,
    /// 400: the session is final already (the consumer paid, or cancelled, first). A read
    /// decides what follows.
    AlreadyFinal,
    /// 404: the session expired (or the id or credentials are wrong). A read decides.
    NotFound,
}

impl DisableAnswer {
    /// The HTTP status code Klarna answers with: 204, 400 or 404.
    #[must_use]
    pub const fn http_status(self) -> u16 {
        match self {
            Self::Disabled => 204,
            Self::AlreadyFinal => 400,
            Self::NotFound => 404,
        }
    }
}

impl fmt::Display for DisableAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disabled => "204: disabled",
            Self::AlreadyFinal => "400: the session is final already",
            Self::NotFound => "404: the session is gone (expired)",
        })
    }
}
