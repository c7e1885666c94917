// The README is the crate's documentation, and its examples are doctests; they parse Klarna's JSON,
// so they need the (default) `serde` feature.
#![cfg_attr(feature = "serde", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "serde"),
    doc = "The lifecycle of a Klarna Hosted Payment Page session: a `no_std`, zero-allocation \
           state machine and snapshot reconciler. Built without the `serde` feature; the full \
           documentation, with examples, is the crate's README (and docs.rs, built with every \
           feature)."
)]
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::todo,
        clippy::unimplemented,
        clippy::unreachable,
    )
)]
#![warn(clippy::pedantic)]

#[cfg(feature = "std")]
extern crate std;

mod action;
mod claim;
mod completion;
pub mod diagram;
mod event;
mod excerpt;
mod id;
mod outcome;
mod precedence;
mod redirect;
mod refusal;
mod schedule;
mod secret;
#[cfg(feature = "serde")]
mod serde_impls;
mod session;
mod settled;
mod snapshot;
mod status;
pub mod table;
mod timestamp;
mod tracker;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod wire;

pub use action::{
    AUTHORIZATION_VALIDITY, Action, ActionId, ActionKind, ActionSet, DisableAnswer, ReleaseReason,
    place_by,
};
pub use claim::{Claim, DEFAULT_MAX_CLOCK_SKEW, FutureHint};
pub use completion::{Completion, CompletionProblem};
pub use event::Event;
pub use excerpt::{EXCERPT_CAPACITY, Excerpt};
pub use id::{
    AuthorizationToken, EventId, IdError, IdKind, KlarnaReference, MAX_ID_LEN, OrderId, SessionId,
};
pub use outcome::{ConflictKind, Outcome};
pub use redirect::Redirect;
pub use refusal::{OtherSession, Refused};
pub use schedule::{
    DEFAULT_DETECT_WITHIN, MAX_DETECT_WITHIN, MAX_READ_BACKOFF, MIN_READ_INTERVAL, NextRead,
    PLACE_ORDER_MARGIN, PolicyError, READ_TIMEOUT, ReadFailure, ReadPolicy, Urgency,
};
pub use secret::{SecretMatched, callback_secret_matches};
pub use session::{InvalidSession, Session, SessionError};
pub use settled::Settled;
pub use snapshot::{Snapshot, SnapshotError, TimestampField};
pub use status::{Status, UnknownStatus};
pub use timestamp::{Timestamp, TimestampError, TimestampErrorKind};
pub use tracker::{NotFoundError, REMEMBERED_EVENTS, Report, State, Tracker, TrackerConfig};
