//! Checking the per-session secret of a status callback: the only way a callback becomes
//! evidence.
//!
//! Klarna signs no callback. It advises putting a per-session secret in the `status_update` URL
//! (over HTTPS) and checking it when a callback arrives. [`callback_secret_matches`] checks it
//! and, when it matches, returns the [`SecretMatched`] that
//! [`crate::Tracker::observe_verified_callback`] takes: there is no other way to make one, so a
//! code path that skips the check cannot turn a forged callback into an order. Without it, a
//! callback is a hint ([`crate::Tracker::observe_callback`]).

use core::fmt;

use subtle::ConstantTimeEq;

use crate::id::SessionId;

/// Proof that a callback's secret matched the secret issued for one session: what
/// [`crate::Tracker::observe_verified_callback`] takes to treat a callback as evidence, for that
/// session only. Only [`callback_secret_matches`] makes one; it is neither `Clone` nor `Copy`, so
/// one check proves one callback, and a secret checked for one session proves nothing about
/// another's (a handler that checks the URL's session and then loads the tracker the body names
/// is refused, not fooled).
#[must_use = "a matched secret is only worth something when the callback is observed with it"]
pub struct SecretMatched {
    pub(crate) session: SessionId,
}

impl SecretMatched {
    /// The session whose secret matched.
    #[must_use]
    pub const fn session_id(&self) -> &SessionId {
        &self.session
    }
}

impl fmt::Debug for SecretMatched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretMatched({})", self.session)
    }
}

/// Checks the secret presented with a callback against the one issued for session `session_id`
/// (the one the callback URL names), in time that does not depend on where they differ (so the
/// comparison does not leak the secret byte by byte): [`SecretMatched`] for that session when
/// they are equal, `None` otherwise.
///
/// The lengths are compared first and not in constant time: issue secrets of a fixed length
/// (e.g. 32 random bytes, hex-encoded), so that the length tells nothing. An empty issued
/// secret never matches: it would let anyone in.
#[must_use]
pub fn callback_secret_matches(
    session_id: &SessionId,
    issued: &[u8],
    presented: &[u8],
) -> Option<SecretMatched> {
    let equal: bool = issued.ct_eq(presented).into();
    (equal && !issued.is_empty()).then(|| SecretMatched {
        session: session_id.clone(),
    })
}
