//! The session statuses, by their wire names.

use core::fmt;
use core::str::FromStr;

use crate::excerpt::Excerpt;

/// The status of a Hosted Payment Page session, as Klarna reports it.
///
/// The first eight are Klarna's lifecycle table; [`Status::ManualIdCheck`] comes from the
/// read-session enum of the API and [`Status::Timeout`] from the status-callback diagram. Their
/// finality is this crate's reading (both non-final, like [`Status::Back`]); see `SPEC.md`.
///
/// One byte, `Copy`; [`Status::as_str`], `Display`, `FromStr` and `TryFrom<&str>` use the exact
/// wire names (`"IN_PROGRESS"`, not `"InProgress"` nor Klarna's one-off `"COMPLETE"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Status {
    /// `WAITING`: created; the consumer has not opened the page yet.
    Waiting = 0,
    /// `IN_PROGRESS`: the consumer is on the page.
    InProgress = 1,
    /// `COMPLETED`: the consumer was authorized. Final.
    Completed = 2,
    /// `FAILED`: the consumer was declined; they may come back and retry.
    Failed = 3,
    /// `CANCELLED`: the consumer cancelled. Final.
    Cancelled = 4,
    /// `BACK`: the consumer pressed Back; they may come back and retry.
    Back = 5,
    /// `ERROR`: the consumer hit an error while paying; they may come back and retry.
    Error = 6,
    /// `DISABLED`: the merchant disabled the session. Final.
    Disabled = 7,
    /// `MANUAL_ID_CHECK`: an identity check is pending (in-store flows).
    ManualIdCheck = 8,
    /// `TIMEOUT`: the page's inactivity timer fired; the consumer may come back and retry.
    Timeout = 9,
}

impl Status {
    /// How many statuses there are.
    pub const COUNT: usize = 10;

    /// Every status, in discriminant order (`ALL[s as usize] == s`).
    pub const ALL: [Self; Self::COUNT] = [
        Self::Waiting,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::Back,
        Self::Error,
        Self::Disabled,
        Self::ManualIdCheck,
        Self::Timeout,
    ];

    /// The wire name, exactly as Klarna writes it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Back => "BACK",
            Self::Error => "ERROR",
            Self::Disabled => "DISABLED",
            Self::ManualIdCheck => "MANUAL_ID_CHECK",
            Self::Timeout => "TIMEOUT",
        }
    }

    /// Whether the status never changes again (`COMPLETED`, `CANCELLED`, `DISABLED`).
    ///
    /// A bit test, not a `match`: next to a table lookup a `match` compiled to a jump table,
    /// whose indirect jump a random stream of events mispredicts (`benches/lifecycle.rs`).
    #[must_use]
    #[inline]
    pub const fn is_final(self) -> bool {
        Self::FINAL & (1 << self as u16) != 0
    }

    /// Whether the consumer left the page but may open it again and retry
    /// (`FAILED`, `BACK`, `ERROR`, `TIMEOUT`).
    #[must_use]
    #[inline]
    pub const fn can_retry(self) -> bool {
        Self::RETRY & (1 << self as u16) != 0
    }

    /// The final statuses, a bit per discriminant.
    const FINAL: u16 = Self::bits(&[Self::Completed, Self::Cancelled, Self::Disabled]);

    /// The statuses a consumer may retry from, a bit per discriminant.
    const RETRY: u16 = Self::bits(&[Self::Failed, Self::Back, Self::Error, Self::Timeout]);

    /// The set of `statuses`, a bit per discriminant.
    #[expect(
        clippy::indexing_slicing,
        reason = "only evaluated at compile time, within the slice's length"
    )]
    const fn bits(statuses: &[Self]) -> u16 {
        let mut bits = 0;
        let mut i = 0;
        while i < statuses.len() {
            bits |= 1 << statuses[i] as u16;
            i += 1;
        }
        bits
    }

    /// The status with discriminant `index`, if there is one (`from_index(s as u8) == Some(s)`).
    #[must_use]
    pub const fn from_index(index: u8) -> Option<Self> {
        match index {
            0 => Some(Self::Waiting),
            1 => Some(Self::InProgress),
            2 => Some(Self::Completed),
            3 => Some(Self::Failed),
            4 => Some(Self::Cancelled),
            5 => Some(Self::Back),
            6 => Some(Self::Error),
            7 => Some(Self::Disabled),
            8 => Some(Self::ManualIdCheck),
            9 => Some(Self::Timeout),
            _ => None,
        }
    }

    /// Parses an exact wire name.
    ///
    /// # Errors
    /// [`UnknownStatus`] for anything else, including other spellings and statuses Klarna may add
    /// later; it keeps an excerpt of the input.
    pub fn from_wire(name: &str) -> Result<Self, UnknownStatus> {
        Ok(match name {
            "WAITING" => Self::Waiting,
            "IN_PROGRESS" => Self::InProgress,
            "COMPLETED" => Self::Completed,
            "FAILED" => Self::Failed,
            "CANCELLED" => Self::Cancelled,
            "BACK" => Self::Back,
            "ERROR" => Self::Error,
            "DISABLED" => Self::Disabled,
            "MANUAL_ID_CHECK" => Self::ManualIdCheck,
            "TIMEOUT" => Self::Timeout,
            _ => return Err(UnknownStatus(Excerpt::new(name))),
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_wire(s)
    }
}

impl TryFrom<&str> for Status {
    type Error = UnknownStatus;

    fn try_from(s: &str) -> Result<Self, UnknownStatus> {
        Self::from_wire(s)
    }
}

/// A status string that is not one of Klarna's wire names.
///
/// Klarna may add statuses without notice; this error lets the caller log and keep going. It
/// never maps the input to a known status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnknownStatus(Excerpt);

impl UnknownStatus {
    /// An excerpt of the rejected input.
    #[must_use]
    pub const fn input(&self) -> &Excerpt {
        &self.0
    }
}

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown session status {:?}", self.0)
    }
}

impl core::error::Error for UnknownStatus {}

// `Status::FINAL` and `Status::RETRY` hold a bit per discriminant in a `u16`.
const _: () = assert!(Status::COUNT <= 16);
