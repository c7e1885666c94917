//! `serde` support (feature `serde`): wire names for statuses, RFC 3339 strings for timestamps,
//! bounded strings for ids, and validated round trips for [`Session`], [`Snapshot`] and
//! [`Tracker`] persistence.
//!
//! Nothing here allocates, even when another crate turns on serde's `std`: timestamps are
//! formatted into a stack buffer, and strings are read through `visit_str`, so borrowed and
//! transient input both work.

use core::fmt::{self, Write as _};
use core::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::action::{Action, ActionKind, ActionSet, ReleaseReason};
use crate::claim::Claim;
use crate::completion::{Completion, CompletionProblem};
use crate::id::{
    AuthorizationToken, EventId, IdError, IdKind, KlarnaReference, OrderId, SessionId,
};
use crate::schedule::ReadPolicy;
use crate::session::Session;
use crate::snapshot::{Change, Snapshot, SnapshotError};
use crate::status::Status;
use crate::timestamp::Timestamp;
use crate::tracker::{Expiry, Parts, REMEMBERED_EVENTS, Retry, Tracker};

/// A visitor that accepts one string and converts it with `parse`.
struct StrVisitor<F> {
    expecting: &'static str,
    parse: F,
}

impl<T, E, F> Visitor<'_> for StrVisitor<F>
where
    F: FnOnce(&str) -> Result<T, E>,
    E: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<DE: de::Error>(self, v: &str) -> Result<T, DE> {
        (self.parse)(v).map_err(DE::custom)
    }
}

fn deserialize_str<'de, D, T, E>(
    deserializer: D,
    expecting: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    deserializer.deserialize_str(StrVisitor { expecting, parse })
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_str(
            deserializer,
            "a session status wire name",
            Status::from_wire,
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = heapless::String::<{ Timestamp::MAX_TEXT_LEN }>::new();
        write!(text, "{self}").map_err(|_| serde::ser::Error::custom("timestamp text overflow"))?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_str(deserializer, "an RFC 3339 timestamp", Timestamp::parse)
    }
}

macro_rules! serde_id {
    ($($name:ident . $text:ident),*) => {$(
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.$text())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_str(deserializer, $name::KIND.as_str(), $name::new)
            }
        }
    )*};
}

serde_id!(
    SessionId.as_str,
    EventId.as_str,
    AuthorizationToken.expose_secret,
    OrderId.as_str,
    KlarnaReference.as_str
);

/// [`Completion`] as Klarna's fields: `{"authorization_token"}`, or
/// `{"order_id", "klarna_reference"?}`, or `{"unusable": problem}`. Generic over owned or
/// borrowed ids, so that serializing copies nothing.
#[derive(Serialize, Deserialize)]
struct CompletionRepr<A, O, K> {
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    authorization_token: Option<A>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    order_id: Option<O>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    klarna_reference: Option<K>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    unusable: Option<ProblemRepr>,
}

/// [`CompletionProblem`]'s stored form.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProblemRepr {
    Missing,
    ReferenceWithoutOrder,
    Id { field: IdKind, len: usize },
    Malformed,
}

const fn none<T>() -> Option<T> {
    None
}

impl Serialize for IdKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IdKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_str(deserializer, "an identifier's field name", |s| {
            IdKind::ALL
                .into_iter()
                .find(|k| k.as_str() == s)
                .ok_or("unknown identifier field")
        })
    }
}

impl Serialize for Completion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut repr = CompletionRepr {
            authorization_token: None,
            order_id: None,
            klarna_reference: None,
            unusable: None,
        };
        match self {
            Completion::Authorized {
                authorization_token,
            } => repr.authorization_token = Some(authorization_token),
            Completion::OrderPlaced {
                order_id,
                klarna_reference,
            } => {
                repr.order_id = Some(order_id);
                repr.klarna_reference = klarna_reference.as_ref();
            }
            Completion::Unusable(problem) => {
                repr.unusable = Some((*problem).into());
            }
        }
        repr.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Completion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = CompletionRepr::<AuthorizationToken, OrderId, KlarnaReference>::deserialize(
            deserializer,
        )?;
        match (
            repr.authorization_token,
            repr.order_id,
            repr.klarna_reference,
            repr.unusable,
        ) {
            (Some(authorization_token), None, None, None) => Ok(Completion::Authorized {
                authorization_token,
            }),
            (None, Some(order_id), klarna_reference, None) => Ok(Completion::OrderPlaced {
                order_id,
                klarna_reference,
            }),
            (None, None, None, Some(problem)) => Ok(Completion::Unusable(problem.into())),
            _ => Err(de::Error::custom(
                "a completion is an authorization_token, an order_id (with a klarna_reference or not), or unusable",
            )),
        }
    }
}

impl Serialize for ActionKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActionKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_str(deserializer, "an action kind", |s| {
            ActionKind::ALL
                .into_iter()
                .find(|k| k.as_str() == s)
                .ok_or("unknown action kind")
        })
    }
}

impl From<CompletionProblem> for ProblemRepr {
    fn from(problem: CompletionProblem) -> Self {
        match problem {
            CompletionProblem::Missing => Self::Missing,
            CompletionProblem::ReferenceWithoutOrder => Self::ReferenceWithoutOrder,
            CompletionProblem::Id(IdError { kind, len }) => Self::Id { field: kind, len },
            CompletionProblem::Malformed => Self::Malformed,
        }
    }
}

impl From<ProblemRepr> for CompletionProblem {
    fn from(problem: ProblemRepr) -> Self {
        match problem {
            ProblemRepr::Missing => Self::Missing,
            ProblemRepr::ReferenceWithoutOrder => Self::ReferenceWithoutOrder,
            ProblemRepr::Id { field, len } => Self::Id(IdError { kind: field, len }),
            ProblemRepr::Malformed => Self::Malformed,
        }
    }
}

/// [`Action`]'s one serialized form: `{"kind", fields…}`, the fields by their wire names. A
/// `place_order` always has `place_by` (`null` when unknown); a `record_order` has
/// `klarna_reference` only when Klarna sent one. The same form everywhere: the replay tool's
/// output, the simulator's expected actions, the reference service's store.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ActionRepr<T, O, K> {
    PlaceOrder {
        authorization_token: T,
        place_by: Option<Timestamp>,
    },
    RecordOrder {
        order_id: O,
        #[serde(default = "none", skip_serializing_if = "Option::is_none")]
        klarna_reference: Option<K>,
    },
    ReviewCompletion {
        problem: ProblemRepr,
    },
    Release {
        reason: ReleaseReason,
    },
    Disable,
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let repr: ActionRepr<&AuthorizationToken, &OrderId, &KlarnaReference> = match self {
            Action::PlaceOrder {
                authorization_token,
                place_by,
            } => ActionRepr::PlaceOrder {
                authorization_token,
                place_by: *place_by,
            },
            Action::RecordOrder {
                order_id,
                klarna_reference,
            } => ActionRepr::RecordOrder {
                order_id,
                klarna_reference: klarna_reference.as_ref(),
            },
            Action::ReviewCompletion { problem } => ActionRepr::ReviewCompletion {
                problem: (*problem).into(),
            },
            Action::Release { reason } => ActionRepr::Release { reason: *reason },
            Action::Disable => ActionRepr::Disable,
        };
        repr.serialize(serializer)
    }
}

/// [`Action`]'s form read back: every field optional, checked against the kind. (An internally
/// tagged enum would need `alloc` to read.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionFields {
    kind: ActionKind,
    #[serde(default = "none")]
    authorization_token: Option<AuthorizationToken>,
    #[serde(default = "none")]
    place_by: Option<Timestamp>,
    #[serde(default = "none")]
    order_id: Option<OrderId>,
    #[serde(default = "none")]
    klarna_reference: Option<KlarnaReference>,
    #[serde(default = "none")]
    problem: Option<ProblemRepr>,
    #[serde(default = "none")]
    reason: Option<ReleaseReason>,
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let f = ActionFields::deserialize(deserializer)?;
        let only = |fields: [bool; 6]| {
            let given = [
                f.authorization_token.is_some(),
                f.place_by.is_some(),
                f.order_id.is_some(),
                f.klarna_reference.is_some(),
                f.problem.is_some(),
                f.reason.is_some(),
            ];
            given.iter().zip(fields).all(|(&g, allowed)| allowed || !g)
        };
        let action = match f.kind {
            ActionKind::PlaceOrder if only([true, true, false, false, false, false]) => f
                .authorization_token
                .map(|authorization_token| Action::PlaceOrder {
                    authorization_token,
                    place_by: f.place_by,
                }),
            ActionKind::RecordOrder if only([false, false, true, true, false, false]) => {
                f.order_id.map(|order_id| Action::RecordOrder {
                    order_id,
                    klarna_reference: f.klarna_reference,
                })
            }
            ActionKind::ReviewCompletion if only([false, false, false, false, true, false]) => f
                .problem
                .map(|p| Action::ReviewCompletion { problem: p.into() }),
            ActionKind::Release if only([false, false, false, false, false, true]) => {
                f.reason.map(|reason| Action::Release { reason })
            }
            ActionKind::Disable if only([false; 6]) => Some(Action::Disable),
            _ => None,
        };
        action.ok_or_else(|| de::Error::custom("an action's fields do not fit its kind"))
    }
}

/// [`Session`]'s stored form; `C` is the completion, owned or borrowed.
#[derive(Serialize, Deserialize)]
struct SessionRepr<C> {
    status: Status,
    changed_at: Timestamp,
    #[serde(default = "none")]
    completion: Option<C>,
    retries: u32,
}

impl Serialize for Session {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SessionRepr {
            status: self.status(),
            changed_at: self.changed_at(),
            completion: self.completion(),
            retries: self.retries(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Session {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = SessionRepr::<Completion>::deserialize(deserializer)?;
        Session::from_parts(r.status, r.changed_at, r.completion, r.retries)
            .map_err(de::Error::custom)
    }
}

/// [`Snapshot`]'s stored form; `C` is the completion, owned or borrowed.
#[derive(Serialize, Deserialize)]
struct SnapshotRepr<C> {
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    session_id: Option<SessionId>,
    status: Status,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    updated_at: Option<Timestamp>,
    #[serde(default = "none")]
    expires_at: Option<Timestamp>,
    #[serde(default = "none")]
    completion: Option<C>,
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SnapshotRepr {
            session_id: self.session_id().cloned(),
            status: self.status(),
            updated_at: self.updated_at(),
            expires_at: self.expires_at(),
            completion: self.completion(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Snapshot {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = SnapshotRepr::<Completion>::deserialize(deserializer)?;
        let snapshot = match (r.updated_at, r.status, r.completion) {
            (Some(at), status, completion) => Snapshot::new(status, at, r.expires_at, completion),
            (None, Status::Completed, Some(completion)) => {
                Ok(Snapshot::paid_undated(completion, r.expires_at))
            }
            (None, ..) => Err(SnapshotError::MissingUpdatedAt),
        }
        .map_err(de::Error::custom)?;
        Ok(match r.session_id {
            Some(id) => snapshot.of_session(id),
            None => snapshot,
        })
    }
}

/// [`ReadPolicy`]'s stored form, validated through its setters on the way in. A field left out
/// is the default's, so a policy stored in the earlier form (`first`, `interval`,
/// `max_interval`: a schedule without a guarantee) reads back as [`ReadPolicy::DEFAULT`].
#[derive(Serialize, Deserialize)]
struct ReadPolicyRepr {
    #[serde(default = "none")]
    detect_within: Option<Duration>,
    #[serde(default = "none")]
    poll_lag: Option<Duration>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    first: Option<Duration>,
    #[serde(default = "none")]
    hint_gap: Option<Duration>,
}

impl Serialize for ReadPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ReadPolicyRepr {
            detect_within: Some(self.detect_within()),
            poll_lag: Some(self.poll_lag()),
            first: self.first_setting(),
            hint_gap: Some(self.hint_gap()),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ReadPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = ReadPolicyRepr::deserialize(deserializer)?;
        if r.detect_within.is_none() {
            // The earlier form: its schedule had no guarantee to keep.
            return Ok(ReadPolicy::DEFAULT);
        }
        let d = ReadPolicy::DEFAULT;
        d.with_detect_within(r.detect_within.unwrap_or(d.detect_within()))
            .and_then(|p| p.with_poll_lag(r.poll_lag.unwrap_or(d.poll_lag())))
            .and_then(|p| match r.first {
                Some(first) => p.with_first(first),
                None => Ok(p),
            })
            .and_then(|p| p.with_hint_gap(r.hint_gap.unwrap_or(d.hint_gap())))
            .map_err(de::Error::custom)
    }
}

impl Serialize for ReleaseReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReleaseReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_str(
            deserializer,
            "CANCELLED, DISABLED or EXPIRED",
            |s| match s {
                "CANCELLED" => Ok(ReleaseReason::Cancelled),
                "DISABLED" => Ok(ReleaseReason::Disabled),
                "EXPIRED" => Ok(ReleaseReason::Expired),
                _ => Err("unknown release reason"),
            },
        )
    }
}

/// [`Claim`]'s stored form.
#[derive(Serialize, Deserialize)]
struct ClaimRepr {
    status: Status,
    updated_at: Timestamp,
}

/// The confirmed change's stored form; `C` is the completion, owned or borrowed. (Trackers
/// stored before the change was kept apart from its snapshot also carry `session_id` and
/// `expires_at` here: the one is ignored, the other stands for the expiry when none is stored.)
#[derive(Serialize, Deserialize)]
struct ChangeRepr<C> {
    status: Status,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    updated_at: Option<Timestamp>,
    #[serde(default = "none", skip_serializing)]
    expires_at: Option<Timestamp>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    completion: Option<C>,
}

/// [`Tracker`]'s stored form; `C` is the completion, owned or borrowed. It holds what the
/// tracker owes (`owed`) and the read in flight, and not the policy ([`TrackerConfig`]): the
/// caller passes that in, so a changed policy applies to every stored tracker.
///
/// Trackers stored by earlier versions still load: their policy fields (`reads`,
/// `max_clock_skew`, `abandon_after`) are ignored; without `owed`, they owe nothing: in 0.1 the
/// actions were return values, kept in the caller's own queue, which stays the record of what
/// is pending (a caller that wants the tracker to owe them adds `owed` from that queue before it
/// loads them, as the reference service does); the read a claim asked for (`asked` bit 8) is
/// dropped, since reads are the schedule's; a tracker made by `Tracker::created` and never read
/// counts its creation as its first read, as it does now.
#[derive(Serialize, Deserialize)]
struct TrackerRepr<C> {
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    session_id: Option<SessionId>,
    #[serde(default = "none")]
    best: Option<ChangeRepr<C>>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    expiry: Option<ExpiryRepr>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    claim: Option<ClaimRepr>,
    asked: u8,
    /// Absent in trackers stored by earlier versions.
    #[serde(default = "none")]
    owed: Option<u8>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    released: Option<ReleaseReason>,
    expired: bool,
    conflicted: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    refuted: u8,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    changed_at: Option<Timestamp>,
    /// When a read became urgent (a final claim, a redirect, a disable asked or refused).
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    urgent_since: Option<Timestamp>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    last_read: Option<Timestamp>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    reading_since: Option<Timestamp>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    retry: Option<RetryRepr>,
    events: heapless::Vec<u32, REMEMBERED_EVENTS>,
    /// The policy trackers stored by earlier versions carried: only its presence is read (it
    /// says the form is the earlier one, even when a caller added `owed` to it).
    #[serde(default = "none", skip_serializing)]
    reads: Option<de::IgnoredAny>,
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's signature")]
const fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// The back-off after failed reads, stored.
#[derive(Serialize, Deserialize)]
struct RetryRepr {
    at: Timestamp,
    failures: u8,
}

/// The known expiry's stored form: the change that stated it, and the `expires_at`.
#[derive(Serialize, Deserialize)]
struct ExpiryRepr {
    status: Status,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    updated_at: Option<Timestamp>,
    expires_at: Timestamp,
}

/// The bit the read a claim asked for had in `asked`, before reads left the actions.
const LEGACY_READ_SESSION: u8 = 8;

impl Serialize for Tracker {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.parts();
        TrackerRepr {
            session_id: p.session,
            best: p.best.as_ref().map(|b| ChangeRepr {
                status: b.status(),
                updated_at: b.updated_at(),
                expires_at: None,
                completion: b.completion(),
            }),
            expiry: p.expiry.map(|e| ExpiryRepr {
                status: e.status,
                updated_at: Some(e.stated_at).filter(|&at| at != Timestamp::MIN),
                expires_at: e.at,
            }),
            claim: p.claim.map(|c| ClaimRepr {
                status: c.status(),
                updated_at: c.updated_at(),
            }),
            asked: p.asked.bits(),
            owed: Some(p.owed.bits()),
            released: p.released,
            expired: p.expired,
            conflicted: p.conflicted,
            refuted: p.refuted,
            changed_at: p.changed_at,
            urgent_since: p.urgent_since,
            last_read: p.last_read,
            reading_since: p.reading_since,
            retry: p.retry.map(|r| RetryRepr {
                at: r.at,
                failures: r.failures,
            }),
            events: p.events,
            reads: None,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Tracker {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = TrackerRepr::<Completion>::deserialize(deserializer)?;
        let bits =
            |b: u8| ActionSet::from_bits(b).ok_or_else(|| de::Error::custom("unknown action bits"));
        let legacy = r.owed.is_none() || r.reads.is_some();
        let asked = bits(if legacy {
            r.asked & !LEGACY_READ_SESSION
        } else {
            r.asked
        })?;
        // Stored by 0.1 without it: what was pending is in the caller's queue, not owed again.
        let owed = r.owed.map_or(Ok(ActionSet::EMPTY), bits)?;
        let mut expiry = r.expiry.map(|e| Expiry {
            at: e.expires_at,
            status: e.status,
            stated_at: e.updated_at.unwrap_or(Timestamp::MIN),
        });
        let best = match r.best {
            None => None,
            Some(b) => {
                let change = match (b.updated_at, b.status, b.completion) {
                    (Some(at), status, completion) => {
                        Snapshot::new(status, at, b.expires_at, completion)
                    }
                    (None, Status::Completed, Some(completion)) => {
                        Ok(Snapshot::paid_undated(completion, b.expires_at))
                    }
                    (None, Status::Disabled, None) => Ok(Snapshot::of_change(
                        Change::disabled_undated(),
                        b.expires_at,
                    )),
                    (None, ..) => Err(SnapshotError::MissingUpdatedAt),
                }
                .map_err(de::Error::custom)?;
                expiry = expiry.or_else(|| Expiry::of(&change));
                Some(change.change().clone())
            }
        };
        let mut last_read = r.last_read;
        if legacy && best.is_none() && last_read.is_none() {
            // Made by `Tracker::created` and never read: the creation was its first read.
            last_read = r.changed_at;
        }
        Tracker::restore(Parts {
            session: r.session_id,
            best,
            expiry,
            claim: r.claim.map(|c| Claim::new(c.status, c.updated_at)),
            asked,
            owed,
            released: r.released,
            expired: r.expired,
            conflicted: r.conflicted,
            refuted: r.refuted,
            changed_at: r.changed_at,
            urgent_since: r.urgent_since,
            last_read,
            reading_since: r.reading_since,
            retry: r.retry.map(|r| Retry {
                at: r.at,
                failures: r.failures,
            }),
            events: r.events,
        })
        .map_err(de::Error::custom)
    }
}
