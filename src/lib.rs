#![doc = include_str!("../README.md")]
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

pub mod diagram;
mod event;
mod excerpt;
mod id;
#[cfg(feature = "serde")]
mod serde_impls;
mod session;
mod status;
pub mod table;
mod timestamp;

pub use event::Event;
pub use excerpt::{EXCERPT_CAPACITY, Excerpt};
pub use id::{
    AuthorizationToken, Completion, EventId, IdError, IdKind, KlarnaReference, MAX_ID_LEN, OrderId,
    SessionId,
};
pub use session::{InvalidSession, Session, SessionError};
pub use status::{Status, UnknownStatus};
pub use timestamp::{Timestamp, TimestampError, TimestampErrorKind};
