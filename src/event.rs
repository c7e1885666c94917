//! What the consumer or the merchant does to a session.

use core::fmt;

/// An action of the consumer or the merchant that may move a session to another status.
///
/// Integrators rarely see events: Klarna reports their results as snapshots (see the tracker).
/// Events are the vocabulary of the transition table in [`crate::table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Event {
    /// The consumer opens the page (first visit, or again after leaving it).
    Open = 0,
    /// The consumer is authorized.
    Authorize = 1,
    /// The consumer is declined.
    Decline = 2,
    /// The consumer presses Back.
    GoBack = 3,
    /// The consumer cancels.
    Cancel = 4,
    /// The consumer hits an error while paying.
    PaymentError = 5,
    /// The page's inactivity timer fires.
    InactivityTimeout = 6,
    /// An identity check is requested (in-store flows).
    RequestIdCheck = 7,
    /// The merchant disables the session through the API.
    Disable = 8,
}

impl Event {
    /// How many events there are.
    pub const COUNT: usize = 9;

    /// Every event, in discriminant order (`ALL[e as usize] == e`).
    pub const ALL: [Self; Self::COUNT] = [
        Self::Open,
        Self::Authorize,
        Self::Decline,
        Self::GoBack,
        Self::Cancel,
        Self::PaymentError,
        Self::InactivityTimeout,
        Self::RequestIdCheck,
        Self::Disable,
    ];

    /// A short lowercase label, used in messages and the lifecycle diagram.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Authorize => "authorize",
            Self::Decline => "decline",
            Self::GoBack => "back",
            Self::Cancel => "cancel",
            Self::PaymentError => "error",
            Self::InactivityTimeout => "timeout",
            Self::RequestIdCheck => "id check",
            Self::Disable => "disable",
        }
    }

    /// Whether the merchant, not the consumer, causes this event. Klarna sends no status callback
    /// for it.
    #[must_use]
    pub const fn is_merchant(self) -> bool {
        matches!(self, Self::Disable)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
