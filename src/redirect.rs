//! The consumer's browser coming back to the merchant: a hint, never evidence.

use core::fmt;

use crate::status::Status;

/// Which of the merchant's URLs Klarna sent the consumer's browser to after the payment page
/// (`merchant_urls` of the HPP session). Anyone can open those URLs, so a redirect only makes a
/// read due at once ([`crate::Tracker::observe_redirect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Redirect {
    /// `success`: the consumer says they paid.
    Success,
    /// `failure`: the payment was declined.
    Failure,
    /// `back`: the consumer went back to the merchant.
    Back,
    /// `cancel`: the consumer cancelled.
    Cancel,
    /// `error`: the page failed.
    Error,
}

impl Redirect {
    /// Every redirect.
    pub const ALL: [Self; 5] = [
        Self::Success,
        Self::Failure,
        Self::Back,
        Self::Cancel,
        Self::Error,
    ];

    /// The status the redirect suggests (and only suggests).
    #[must_use]
    pub const fn status(self) -> Status {
        match self {
            Self::Success => Status::Completed,
            Self::Failure => Status::Failed,
            Self::Back => Status::Back,
            Self::Cancel => Status::Cancelled,
            Self::Error => Status::Error,
        }
    }

    /// The redirect a status change sends the consumer to, if any.
    #[must_use]
    pub const fn after(status: Status) -> Option<Self> {
        Some(match status {
            Status::Completed => Self::Success,
            Status::Failed => Self::Failure,
            Status::Back => Self::Back,
            Status::Cancelled => Self::Cancel,
            Status::Error => Self::Error,
            _ => return None,
        })
    }

    /// The URL's name in `merchant_urls`: `"success"`, `"failure"`, `"back"`, `"cancel"`,
    /// `"error"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Back => "back",
            Self::Cancel => "cancel",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Redirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
