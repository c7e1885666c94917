//! How evidence and hints move a tracker's state, and what the state asks the merchant for.

use core::cmp::Ordering;

use super::{Expiry, Report, Tracker};
use crate::action::{ActionKind, ActionSet, ReleaseReason};
use crate::claim::Claim;
use crate::completion::Completion;
use crate::outcome::{ConflictKind, Outcome};
use crate::precedence::{
    Pair, change_key, contradiction, precedence, snapshots_contradict, sort_time,
};
use crate::snapshot::{Change, Snapshot};
use crate::status::Status;
use crate::table;
use crate::timestamp::Timestamp;

/// Where the recorded claim stands against the confirmed state.
pub(super) enum Standing {
    /// No claim, or confirmed evidence outranks it.
    None,
    /// It outranks the confirmed state and could follow it: awaiting confirmation.
    Open(Claim),
    /// It outranks the confirmed state but cannot follow it: confirmed evidence shows it false.
    Refuted,
}

/// The claim a dated change makes; `None` for an undated one.
fn dated_claim(s: &Change) -> Option<Claim> {
    Some(Claim::new(s.status(), s.updated_at()?))
}

impl Tracker {
    /// Where the recorded claim stands against the confirmed state.
    pub(super) fn claim_standing(&self) -> Standing {
        let Some(claim) = self.claim else {
            return Standing::None;
        };
        let Some(best) = &self.best else {
            return Standing::Open(claim);
        };
        if claim.key() <= change_key(best.status(), sort_time(best)) {
            return Standing::None;
        }
        if Self::claim_is_best(claim, best) {
            // The claimed change, confirmed (an undated read of it ranks below the claim).
            return Standing::None;
        }
        let pair = Pair {
            earlier: (best.status(), best.updated_at()),
            later: (claim.status(), Some(claim.updated_at())),
        };
        match contradiction(pair) {
            None => Standing::Open(claim),
            Some(_) => Standing::Refuted,
        }
    }

    /// Whether `claim` is the confirmed change `best` itself: the same status at the same time,
    /// or `best` undated (a session completes once, and is disabled once).
    fn claim_is_best(claim: Claim, best: &Change) -> bool {
        claim.status() == best.status()
            && best.updated_at().is_none_or(|at| at == claim.updated_at())
    }

    /// Whether confirmed evidence shows the recorded claim false: another change than the best,
    /// that cannot be ordered with it in one history, whichever ranks higher.
    fn claim_refuted(&self) -> bool {
        let (Some(claim), Some(best)) = (self.claim, &self.best) else {
            return false;
        };
        if Self::claim_is_best(claim, best) {
            return false;
        }
        let (claimed, confirmed) = (
            (claim.status(), Some(claim.updated_at())),
            (best.status(), best.updated_at()),
        );
        let pair = if claim.key() > change_key(best.status(), sort_time(best)) {
            Pair {
                earlier: confirmed,
                later: claimed,
            }
        } else {
            Pair {
                earlier: claimed,
                later: confirmed,
            }
        };
        contradiction(pair).is_some()
    }

    /// Remembers a callback that changed the tracker, asks for what is now warranted, and
    /// reports. `abandoned` is the time of a read that found the session past the merchant's
    /// time limit, if one did.
    pub(super) fn settle(
        &mut self,
        event: Option<u32>,
        outcome: Outcome,
        was_conflicted: bool,
        abandoned: Option<Timestamp>,
    ) -> Report {
        if !outcome.changed() {
            let seen = event.is_some_and(|h| self.events.contains(h));
            let outcome = if seen { Outcome::Duplicate } else { outcome };
            // Nothing changed, but a read may find the session abandoned.
            let new = if abandoned.is_some() {
                self.ask(abandoned)
            } else {
                ActionSet::EMPTY
            };
            return Report::new(outcome, new);
        }
        if let Some(h) = event {
            self.events.push(h);
        }
        let new = self.ask(abandoned);
        // The observation that reveals money against a release says so itself, not only the
        // sticky flag.
        let outcome = match outcome {
            Outcome::Advanced { from, to, .. } if self.conflicted && !was_conflicted => {
                Outcome::Contradicts { from, to }
            }
            Outcome::Confirmed(to) if self.conflicted && !was_conflicted => {
                Outcome::Contradicts { from: None, to }
            }
            outcome => outcome,
        };
        Report::new(outcome, new)
    }

    /// Folds confirmed evidence `s`, learned at `learned_at` (the caller's clock), into the
    /// best change (and its `expires_at` into the known expiry); says what it did.
    pub(super) fn reconcile(&mut self, s: &Snapshot, learned_at: Timestamp) -> Outcome {
        let expiry = Expiry::of(s).filter(|e| self.expiry.is_none_or(|k| e.rank() > k.rank()));
        let outcome = self.reconcile_best(s.change(), learned_at);
        if let Some(expiry) = expiry {
            self.expiry = Some(expiry);
            if let (false, Some(status)) = (outcome.changed(), self.status()) {
                // Only the expiry is news (an older read stated it, a newer one did not).
                return Outcome::Advanced {
                    from: Some(status),
                    to: status,
                    skipped: false,
                };
            }
        }
        outcome
    }

    /// Folds confirmed change `s` into the best change; says what it did.
    fn reconcile_best(&mut self, s: &Change, learned_at: Timestamp) -> Outcome {
        // A claim shown until now, which this evidence may show false.
        let claim_was_open = matches!(self.claim_standing(), Standing::Open(_));
        let from = match &self.best {
            None => None,
            Some(best) => {
                let (known, observed) = (best.status(), s.status());
                let outranks = precedence(s).cmp(&precedence(best)) == Ordering::Greater;
                if !outranks {
                    // The same change, older news, or a contradiction.
                    if s.same_change(best) {
                        return Outcome::Duplicate;
                    }
                    return match snapshots_contradict(s, best) {
                        Some(kind) => self.conflict(known, observed, kind),
                        None => Outcome::Stale,
                    };
                }
                if let Some(kind) = snapshots_contradict(best, s) {
                    // The higher precedence wins (an authorization always does), reported.
                    self.take_best(s, learned_at, claim_was_open);
                    return self.conflict(known, observed, kind);
                }
                // A dated read of an undated change skips nothing.
                Some((known, s.same_change(best)))
            }
        };
        let skipped = from.is_some_and(|(f, same)| !same && !table::has_edge(f, s.status()));
        let from = from.map(|(f, _)| f);
        let claimed = self.claim.is_some() && self.claim == dated_claim(s);
        self.take_best(s, learned_at, claim_was_open);
        if claimed {
            Outcome::Confirmed(s.status())
        } else {
            Outcome::Advanced {
                from,
                to: s.status(),
                skipped,
            }
        }
    }

    /// Makes `s` the best change, learned at `learned_at`; counts the claim it shows false, if
    /// the claim was shown until now (whether it now ranks above the best or below it).
    fn take_best(&mut self, s: &Change, learned_at: Timestamp, claim_was_open: bool) {
        self.best = Some(s.clone());
        self.changed_at = Some(learned_at);
        if claim_was_open && self.claim_refuted() {
            // Authenticated evidence shows the claim could not have happened: a forged
            // callback, most likely. Nothing was acted on.
            self.refute();
        }
    }

    /// Weighs hint `s` against the confirmed state and the claim; says what it did. `seen`: a
    /// callback whose event id was taken before (a re-delivery is not counted twice).
    pub(super) fn weigh_hint(&mut self, s: &Snapshot, now: Timestamp, seen: bool) -> Outcome {
        let change = s.change();
        // An undated hint (a `COMPLETED` body without a readable `updated_at`) claims its change
        // when it arrived: it happened no later.
        let claim = dated_claim(change).unwrap_or(Claim::new(change.status(), now));
        let mut refuted = None;
        if let Some(best) = &self.best {
            let (known, observed) = (best.status(), change.status());
            // The change confirmed already (an undated hint is stamped on arrival, later than
            // the change it repeats).
            if change.same_change(best) {
                return Outcome::Duplicate;
            }
            if claim.key() <= change_key(known, sort_time(best)) {
                // Confirmed evidence outranks it: it can only be old news, or false.
                return match snapshots_contradict(change, best) {
                    Some(_) if seen => Outcome::Duplicate,
                    Some(kind) => self.refuted_hint(known, observed, kind),
                    None => Outcome::Stale,
                };
            }
            refuted = snapshots_contradict(best, change).map(|kind| (known, observed, kind));
        }
        let rises = self.claim.is_none_or(|c| claim.key() > c.key());
        if rises {
            // Recorded even when refuted on arrival: the claim is the highest hint that
            // outranked the best when it came, which makes what is shown a function of the set
            // of observations.
            self.claim = Some(claim);
        }
        if let Some((known, observed, kind)) = refuted {
            if seen && rises {
                // An event id seen before with another body (a true repeat raises no claim):
                // refuted like the first, and counted once. Not a duplicate: it moved the claim.
                return Outcome::Refuted {
                    known,
                    claimed: observed,
                    kind,
                };
            }
            if seen {
                return Outcome::Duplicate;
            }
            return self.refuted_hint(known, observed, kind);
        }
        if rises {
            if claim.status().is_final() && self.urgent_since.is_none() {
                // A final status that could be real: read at once.
                self.urgent_since = Some(now);
            }
            Outcome::Claimed(claim.status())
        } else if self.claim == Some(claim) {
            Outcome::Duplicate
        } else {
            Outcome::Stale
        }
    }

    /// Counts a hint that confirmed evidence shows false.
    fn refuted_hint(&mut self, known: Status, claimed: Status, kind: ConflictKind) -> Outcome {
        self.refute();
        Outcome::Refuted {
            known,
            claimed,
            kind,
        }
    }

    /// Counts one refuted claim.
    fn refute(&mut self) {
        self.refuted = self.refuted.saturating_add(1);
    }

    /// Remembers that confirmed observations contradicted each other.
    fn conflict(&mut self, known: Status, observed: Status, kind: ConflictKind) -> Outcome {
        self.conflicted = true;
        Outcome::Conflict {
            known,
            observed,
            kind,
        }
    }

    /// Asks for what the confirmed state warrants and has not been asked for; it is owed until
    /// done. Returns the new kinds. `abandoned` is the time of a read that found the session
    /// past the merchant's time limit: only a read does.
    pub(super) fn ask(&mut self, abandoned: Option<Timestamp>) -> ActionSet {
        let mut due = ActionSet::EMPTY;
        let mut release = None;
        if let Some(best) = &self.best {
            match best.completion() {
                Some(Completion::Authorized { .. }) => due = due.with(ActionKind::PlaceOrder),
                Some(Completion::OrderPlaced { .. }) => due = due.with(ActionKind::RecordOrder),
                Some(Completion::Unusable(_)) => due = due.with(ActionKind::ReviewCompletion),
                None => {}
            }
            release = match best.status() {
                // Paid: never released, whatever else is known.
                Status::Completed => None,
                Status::Cancelled => Some(ReleaseReason::Cancelled),
                Status::Disabled => Some(ReleaseReason::Disabled),
                _ if self.expired => Some(ReleaseReason::Expired),
                _ => None,
            };
        }
        if let Some(reason) = release {
            due = due.with(ActionKind::Release);
            if !self.asked.contains(ActionKind::Release) {
                self.released = Some(reason);
            }
        }
        if let Some(now) = abandoned {
            due = due.with(ActionKind::Disable);
            // Read again once the merchant has disabled it, unless its answer settles it.
            self.urgent_since = Some(now);
        }
        let new = due.without(self.asked);
        self.asked = self.asked.union(new);
        self.owed = self.owed.union(new);
        // A money action the confirmed state no longer warrants is owed no more: confirmed
        // evidence of higher precedence replaced the completion it was asked for (two tokens,
        // a token then Klarna's order: a conflict, flagged below), and its data is gone with it.
        let money = ActionSet::EMPTY
            .with(ActionKind::PlaceOrder)
            .with(ActionKind::RecordOrder)
            .with(ActionKind::ReviewCompletion);
        self.owed = self.owed.without(money.without(due));
        // A release the confirmed state no longer warrants is owed no more: a `COMPLETED` of
        // higher precedence came before it was done (an authorization read, or a late verified
        // callback, after a 404 at expiry or a cancel). The paid cart is never released; the
        // contradiction is flagged below.
        if release.is_none() {
            self.owed = self
                .owed
                .without(ActionSet::EMPTY.with(ActionKind::Release));
        }
        // A disable is not needed once the session ended: a final session cannot be disabled.
        if self.best.as_ref().is_some_and(|b| b.status().is_final()) || self.expired {
            self.owed = self
                .owed
                .without(ActionSet::EMPTY.with(ActionKind::Disable));
        }
        // Money and a release for one session: only contradictory evidence gets here (a cancel
        // then an authorization, or an authorization read after the session expired).
        let money = self.asked.iter().any(ActionKind::is_money);
        if money && self.asked.contains(ActionKind::Release) {
            self.conflicted = true;
        }
        new
    }
}
