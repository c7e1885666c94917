//! Checking the per-session secret of a status callback.
//!
//! Klarna signs no callback. It advises putting a per-session secret in the `status_update` URL
//! (over HTTPS) and checking it when a callback arrives. An integrator that does so may trust
//! callbacks ([`crate::CallbackTrust::Verified`]).

use subtle::ConstantTimeEq;

/// Whether the secret presented with a callback equals the one issued for the session, compared
/// in time that does not depend on where they differ (so the comparison does not leak the secret
/// byte by byte).
///
/// The lengths are compared first and not in constant time: issue secrets of a fixed length
/// (e.g. 32 random bytes, hex-encoded), so that the length tells nothing.
#[must_use]
pub fn callback_secret_matches(issued: &[u8], presented: &[u8]) -> bool {
    issued.ct_eq(presented).into()
}
