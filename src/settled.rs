//! A settled session in a few dozen bytes: what a tracker must still know once its session ended
//! and nothing is owed (every action asked for was done), so that the session can reappear (a
//! retried callback, a late read, a forged claim) without anything asked twice.

use core::hash::{Hash, Hasher};

use crate::action::{ActionSet, ReleaseReason};
use crate::claim::{Claim, refuse_future};
use crate::completion::Completion;
use crate::id::SessionId;
use crate::outcome::{ConflictKind, Outcome};
use crate::precedence::{Pair, change_key, contradiction};
use crate::refusal::Refused;
use crate::snapshot::{Change, Snapshot};
use crate::status::Status;
use crate::timestamp::Timestamp;
use crate::tracker::{Carried, Expiry, NotFoundError, Tracker, TrackerConfig};

/// What a [`crate::Tracker`] keeps of a settled session ([`crate::Tracker::settled`]: final or
/// expired, and nothing owed): its confirmed change (status, `updated_at`, and a 64-bit digest
/// of the completion, not the completion), its expiry, and what was asked. 64 bytes instead of a
/// tracker's 1,024: what a service or a replay keeps in memory for each of millions of ended
/// sessions (it is not serialized: store the whole [`crate::Tracker`], and make the stand-in
/// from it when you load one that settled).
///
/// A settled session answers what can reappear without ever asking anything again: the same
/// change (a retried callback, a second read) is a duplicate; older news is stale; an unsigned
/// claim that contradicts it is refuted (not counted: a settled session keeps no counter); a
/// 404 after expiry marks it expired. Confirmed
/// evidence of *higher* precedence (an authorization read after a cancel: contradictory, and
/// money) needs the whole tracker: [`Settled::observe_read`] answers `None`, and
/// [`Settled::revive`] makes a tracker that observes it exactly as the original would have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Settled {
    /// `None`: an undated change (a `COMPLETED` body that did not say when, or the `DISABLED` a
    /// disable's 204 showed).
    updated_at: Time,
    /// The known expiry, with the change that stated it (as the tracker keeps it).
    expiry_at: Time,
    expiry_stated_at: Time,
    /// The highest unsigned claim that outranked the confirmed change when it came (as the
    /// tracker keeps it: a later read may show it false).
    claim_at: Time,
    /// The completion's digest, in two halves (so that the whole aligns to 4 bytes).
    completion_digest: [u32; 2],
    status: Status,
    /// The completion's kind (its place in [`Completion`]'s order), `NO_COMPLETION` for none.
    completion_kind: u8,
    expiry_status: Status,
    claim_status: Option<Status>,
    asked: ActionSet,
    released: Option<ReleaseReason>,
    /// [`EXPIRED`] and [`CONFLICTED`].
    flags: u8,
}

/// `completion_kind` of a change without a completion.
const NO_COMPLETION: u8 = u8::MAX;
/// `flags`: the session expired.
const EXPIRED: u8 = 1;
/// `flags`: observations contradicted each other.
const CONFLICTED: u8 = 2;

/// An optional instant in 12 bytes (aligned to 4): a settled session stores four.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C, packed(4))]
struct Time {
    secs: i64,
    /// `u32::MAX`: none.
    nanos: u32,
}

impl Time {
    const NONE: Self = Self {
        secs: 0,
        nanos: u32::MAX,
    };

    fn of(t: Option<Timestamp>) -> Self {
        t.map_or(Self::NONE, |t| Self {
            secs: t.unix_seconds(),
            nanos: t.subsec_nanos(),
        })
    }

    fn get(self) -> Option<Timestamp> {
        let Self { secs, nanos } = self;
        Timestamp::from_unix(secs, nanos)
    }
}

/// FNV-1a, 64 bits: the digest that tells one completion from another.
struct Fnv64(u64);

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A 64-bit digest as two halves, so that a settled session aligns to 4 bytes.
fn split(digest: u64) -> [u32; 2] {
    let lo = u32::try_from(digest & u64::from(u32::MAX)).unwrap_or(0);
    let hi = u32::try_from(digest >> 32).unwrap_or(0);
    [lo, hi]
}

/// The kind and digest of a completion.
fn digest(completion: &Completion) -> (u8, u64) {
    let kind = match completion {
        Completion::Unusable(_) => 0,
        Completion::Authorized { .. } => 1,
        Completion::OrderPlaced { .. } => 2,
    };
    let mut h = Fnv64(0xcbf2_9ce4_8422_2325);
    completion.hash(&mut h);
    (kind, h.finish())
}

/// A completion of `kind` that stands for a settled one whose data was not kept. It only has to
/// order as the original does against another kind ([`Completion`]'s order is by kind first);
/// against the same kind the original's data is unknown, and either order asks for nothing new
/// (that kind was asked already).
fn stand_in(kind: u8) -> Option<Completion> {
    use crate::completion::CompletionProblem;
    match kind {
        0 => Some(Completion::Unusable(CompletionProblem::Missing)),
        1 => Completion::authorized("settled").ok(),
        _ => Completion::from_fields(None, Some("settled"), None),
    }
}

impl Settled {
    pub(crate) fn new(
        best: &Change,
        expiry: Option<Expiry>,
        claim: Option<Claim>,
        asked: ActionSet,
        released: Option<ReleaseReason>,
        expired: bool,
        conflicted: bool,
    ) -> Self {
        let digest = best.completion().map(digest);
        let [lo, hi] = split(digest.map_or(0, |d| d.1));
        let mut settled = Self {
            updated_at: Time::of(best.updated_at()),
            expiry_at: Time::NONE,
            expiry_stated_at: Time::NONE,
            claim_at: Time::NONE,
            completion_digest: [lo, hi],
            status: best.status(),
            completion_kind: digest.map_or(NO_COMPLETION, |d| d.0),
            expiry_status: best.status(),
            claim_status: None,
            asked,
            released,
            flags: (u8::from(expired) * EXPIRED) | (u8::from(conflicted) * CONFLICTED),
        };
        settled.set_expiry(expiry);
        settled.set_claim(claim);
        settled
    }

    fn expiry(&self) -> Option<Expiry> {
        Some(Expiry {
            at: self.expiry_at.get()?,
            status: self.expiry_status,
            stated_at: self.expiry_stated_at.get().unwrap_or(Timestamp::MIN),
        })
    }

    fn set_expiry(&mut self, expiry: Option<Expiry>) {
        self.expiry_at = Time::of(expiry.map(|e| e.at));
        if let Some(e) = expiry {
            self.expiry_status = e.status;
            self.expiry_stated_at = Time::of(Some(e.stated_at));
        }
    }

    fn claim(&self) -> Option<Claim> {
        Some(Claim::new(self.claim_status?, self.claim_at.get()?))
    }

    fn set_claim(&mut self, claim: Option<Claim>) {
        self.claim_status = claim.map(|c| c.status());
        self.claim_at = Time::of(claim.map(|c| c.updated_at()));
    }

    fn completion(&self) -> Option<(u8, u64)> {
        let [lo, hi] = self.completion_digest;
        let kind = Some(self.completion_kind).filter(|&k| k != NO_COMPLETION)?;
        Some((kind, u64::from(lo) | (u64::from(hi) << 32)))
    }

    /// The confirmed status.
    #[must_use]
    pub const fn status(&self) -> Status {
        self.status
    }

    /// Whether the session expired.
    #[must_use]
    pub const fn is_expired(&self) -> bool {
        self.flags & EXPIRED != 0
    }

    /// Whether observations contradicted each other ([`crate::Tracker::has_conflict`]).
    #[must_use]
    pub const fn has_conflict(&self) -> bool {
        self.flags & CONFLICTED != 0
    }

    /// The actions asked for.
    #[must_use]
    pub const fn asked(&self) -> ActionSet {
        self.asked
    }

    /// The known `expires_at`.
    #[must_use]
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expiry_at.get()
    }

    /// Whether `s` is the settled change itself ([`Snapshot::same_change`]: an undated change
    /// is the same as any of its status and completion).
    fn same_change(&self, s: &Snapshot) -> bool {
        let same_time = match (self.updated_at.get(), s.updated_at()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.status == s.status() && same_time && self.completion() == s.completion().map(digest)
    }

    /// The settled change's key, with its completion's kind as the next tie-break.
    fn key(&self) -> (crate::precedence::ChangeKey, Option<u8>) {
        let at = self.updated_at.get().unwrap_or(Timestamp::MIN);
        (change_key(self.status, at), self.completion().map(|c| c.0))
    }

    /// Where `s` stands against the settled change: how it contradicts it, whether it
    /// outranks it.
    fn weigh(&self, s: &Snapshot) -> (Option<ConflictKind>, bool) {
        let theirs = (
            change_key(s.status(), s.updated_at().unwrap_or(Timestamp::MIN)),
            s.completion().map(|c| digest(c).0),
        );
        let mine = (self.status, self.updated_at.get());
        let other = (s.status(), s.updated_at());
        let outranks = theirs > self.key();
        let pair = if outranks {
            Pair {
                earlier: mine,
                later: other,
            }
        } else {
            Pair {
                earlier: other,
                later: mine,
            }
        };
        (contradiction(pair), outranks)
    }

    /// Observes confirmed evidence (a read, or a verified callback). `Some` with what it did
    /// when the settled session answers it; it never asks for anything. `None` when `s` outranks
    /// the settled change: then [`Settled::revive`] a tracker and observe `s` on it.
    pub fn observe_read(&mut self, s: &Snapshot) -> Option<Outcome> {
        let outcome = if self.same_change(s) {
            if self.updated_at.get().is_none() && s.updated_at().is_some() {
                // The same change, now dated: it outranks the undated one and replaces it.
                self.updated_at = Time::of(s.updated_at());
                Outcome::Advanced {
                    from: Some(self.status),
                    to: self.status,
                    skipped: false,
                }
            } else {
                Outcome::Duplicate
            }
        } else {
            match self.weigh(s) {
                (_, true) => return None,
                (Some(kind), false) => self.conflict(s.status(), kind),
                (None, false) => Outcome::Stale,
            }
        };
        // As the tracker does: the expiry of the highest change that stated one.
        let stated = Expiry::of(s);
        if let Some(stated) = stated.filter(|e| self.expiry().is_none_or(|k| e.rank() > k.rank())) {
            self.set_expiry(Some(stated));
        }
        Some(outcome)
    }

    /// Observes an unsigned callback, as [`crate::Tracker::observe_callback`] does: it never
    /// asks for anything. `Ok(None)` only for a session that settled by expiring without a final
    /// status: [`Settled::revive`] a tracker and observe it there.
    ///
    /// # Errors
    /// [`Refused::FutureHint`] when the snapshot's `updated_at` is more than
    /// `config.max_clock_skew` after `now`. Nothing changes.
    pub fn observe_callback(
        &mut self,
        s: &Snapshot,
        now: Timestamp,
        config: &TrackerConfig,
    ) -> Result<Option<Outcome>, Refused> {
        refuse_future(s.updated_at(), now, config.max_clock_skew)?;
        Ok(self.weigh_hint(s, now))
    }

    /// The tracker's weighing of a hint against a final confirmed change.
    fn weigh_hint(&mut self, s: &Snapshot, now: Timestamp) -> Option<Outcome> {
        if !self.status.is_final() {
            return None;
        }
        if self.same_change(s) {
            return Some(Outcome::Duplicate);
        }
        // An undated hint claims its change when it arrived, as the tracker takes it.
        let claim = Claim::new(s.status(), s.updated_at().unwrap_or(now));
        let mine = change_key(self.status, self.updated_at.get().unwrap_or(Timestamp::MIN));
        let (settled, hinted) = (
            (self.status, self.updated_at.get()),
            (s.status(), s.updated_at()),
        );
        let outranks = claim.key() > mine;
        let pair = if outranks {
            Pair {
                earlier: settled,
                later: hinted,
            }
        } else {
            Pair {
                earlier: hinted,
                later: settled,
            }
        };
        // Nothing can follow a final status: a claim that outranks it is refuted. (The tracker
        // also remembers such a claim; against a final status it can never open.)
        Some(match contradiction(pair) {
            Some(kind) => self.refuted(s.status(), kind),
            None if outranks => Outcome::Claimed(s.status()),
            None => Outcome::Stale,
        })
    }

    /// A hint the settled change shows false: refuted, never a conflict.
    const fn refuted(&self, claimed: Status, kind: ConflictKind) -> Outcome {
        Outcome::Refuted {
            known: self.status,
            claimed,
            kind,
        }
    }

    /// Observes a read that answered 404 at `now`, as [`crate::Tracker::observe_not_found`]
    /// does. A settled session has asked for everything already: nothing more is asked.
    ///
    /// # Errors
    /// [`NotFoundError`] when the known `expires_at` is unknown or later than `now`.
    pub fn observe_not_found(&mut self, now: Timestamp) -> Result<Outcome, NotFoundError> {
        if self.is_expired() {
            return Ok(Outcome::Duplicate);
        }
        match self.expires_at() {
            Some(at) if now >= at => {
                self.flags |= EXPIRED;
                Ok(Outcome::Expired)
            }
            expires_at => Err(NotFoundError { now, expires_at }),
        }
    }

    fn conflict(&mut self, observed: Status, kind: ConflictKind) -> Outcome {
        self.flags |= CONFLICTED;
        Outcome::Conflict {
            known: self.status,
            observed,
            kind,
        }
    }

    /// A tracker that continues from the settled session: what it asked, its flags and expiry,
    /// and its confirmed change with a stand-in for the completion it did not keep. Observing on
    /// it the evidence [`Settled::observe_read`] answered `None` for does what the original
    /// tracker would have done: that evidence outranks the change, so it replaces it, and the
    /// actions it warrants are asked for unless they were.
    #[must_use]
    pub fn revive(&self, session: Option<SessionId>) -> Tracker {
        let completion = self.completion().and_then(|(kind, _)| stand_in(kind));
        let best = Some(Change::new(self.status, self.updated_at.get(), completion));
        Tracker::revived(
            session,
            Carried {
                best,
                expiry: self.expiry(),
                claim: self.claim(),
                asked: self.asked,
                released: self.released,
                expired: self.is_expired(),
                conflicted: self.has_conflict(),
            },
        )
    }
}
