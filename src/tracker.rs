//! Reconciling snapshots from callbacks and reads into one state and exactly-once actions.

use core::cmp::Ordering;
use core::fmt;
use core::hash::Hasher as _;

use crate::action::{AUTHORIZATION_VALIDITY, Action, ActionKind, ActionSet, ReleaseReason};
use crate::id::Completion;
use crate::outcome::{ConflictKind, Outcome};
use crate::schedule::ReadPolicy;
use crate::snapshot::Snapshot;
use crate::status::Status;
use crate::table;
use crate::timestamp::Timestamp;

/// How many recent callback `event_id`s a tracker remembers (as 32-bit hashes) to report
/// re-deliveries as duplicates. Correctness never depends on it: a forgotten or colliding id only
/// changes how an observation that changes nothing is labelled (`Stale` or `Duplicate`).
pub const REMEMBERED_EVENTS: usize = 16;

/// Whether a status callback, which Klarna does not sign, may confirm a status by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CallbackTrust {
    /// Callbacks are hints: a final status they report asks for a confirming read, and money
    /// actions wait for it. The default.
    #[default]
    Hint,
    /// The integrator checks a per-session secret on every callback
    /// ([`crate::callback_secret_matches`]) before observing it: callbacks confirm.
    Verified,
}

/// How a [`Tracker`] treats callbacks and schedules reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TrackerConfig {
    /// Whether callbacks confirm by themselves.
    pub trust: CallbackTrust,
    /// When to read the session.
    pub reads: ReadPolicy,
}

/// The reconciled state of one session: what the tracker knows, and nothing about when or in
/// which order it learned it. Two trackers that saw the same set of snapshots have equal states
/// (404s count too, when they come after the snapshots, as they do: a session answers 404 only
/// once it expired).
///
/// Not part of it: [`Tracker::has_conflict`], a warning flag raised when a snapshot contradicts
/// the best one known at the time (with contradictory input, which pair meets depends on the
/// order), and the read schedule, which depends on when things were learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State<'t> {
    /// The best snapshot's status (`None` before the first snapshot).
    pub status: Option<Status>,
    /// The best snapshot's `updated_at`.
    pub updated_at: Option<Timestamp>,
    /// The best snapshot's completion data.
    pub completion: Option<&'t Completion>,
    /// The best snapshot's `expires_at`.
    pub expires_at: Option<Timestamp>,
    /// Whether a confirming channel showed the best snapshot's status change.
    pub confirmed: bool,
    /// Whether a read answered 404 at or after `expires_at`.
    pub expired: bool,
}

/// One HPP session as an integrator sees it, reconciled from snapshots (callbacks and reads) and
/// 404s, with the merchant's actions asked for exactly once. Sans-I/O: the caller passes `now`,
/// and the tracker returns what to do as values ([`Report`]).
///
/// # How snapshots are ordered
///
/// Every snapshot has a *precedence*: `COMPLETED` above the other final statuses, final
/// statuses above the rest, then later `updated_at` above earlier, then the status, the
/// completion data and `expires_at` as deterministic tie-breaks. The tracker keeps the snapshot of
/// highest precedence it has seen (the *best*), and whether a confirming channel (a read, or a
/// verified callback) has shown the same status change. Both are functions of the *set* of
/// snapshots seen: neither the order nor repetition matters, and a lost snapshot in between never
/// keeps the tracker from taking the newest one.
///
/// # Actions
///
/// After every observation the tracker compares what the state warrants with what it has
/// already asked for, and asks for the difference, so each kind is asked for at most once:
/// place the order (a confirmed `COMPLETED` with a token), record the order (a confirmed
/// `COMPLETED` with an order id), release the cart (a confirmed `CANCELLED` or `DISABLED`, or
/// expiry, unless an authorization is known), read the session (a final status only an unsigned
/// callback reported).
///
/// `SPEC.md` states the rules precisely and names the test behind each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    pub(crate) config: TrackerConfig,
    pub(crate) best: Option<Snapshot>,
    pub(crate) confirmed: bool,
    pub(crate) expired: bool,
    pub(crate) conflicted: bool,
    /// What has been asked for already.
    pub(crate) asked: ActionSet,
    /// Why the cart was released, once it was.
    pub(crate) released: Option<ReleaseReason>,
    /// When (the caller's `now`) the tracker last changed: the anchor of the read schedule.
    pub(crate) changed_at: Option<Timestamp>,
    /// Hashes of the `event_id`s of callbacks that changed the tracker, oldest first.
    pub(crate) events: heapless::Deque<u32, REMEMBERED_EVENTS>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(TrackerConfig::default())
    }
}

/// Where a snapshot came from.
#[derive(Clone, Copy)]
enum Channel<'a> {
    Callback { event_id: Option<&'a str> },
    Read,
}

impl Tracker {
    /// A tracker that knows nothing yet.
    #[must_use]
    pub const fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            best: None,
            confirmed: false,
            expired: false,
            conflicted: false,
            asked: ActionSet::EMPTY,
            released: None,
            changed_at: None,
            events: heapless::Deque::new(),
        }
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// The reconciled state.
    #[must_use]
    pub fn state(&self) -> State<'_> {
        State {
            status: self.status(),
            updated_at: self.best.as_ref().map(Snapshot::updated_at),
            completion: self.best.as_ref().and_then(Snapshot::completion),
            expires_at: self.best.as_ref().and_then(Snapshot::expires_at),
            confirmed: self.confirmed,
            expired: self.expired,
        }
    }

    /// The best snapshot seen, if any.
    #[must_use]
    pub const fn snapshot(&self) -> Option<&Snapshot> {
        self.best.as_ref()
    }

    /// The status of the best snapshot seen.
    #[must_use]
    pub fn status(&self) -> Option<Status> {
        self.best.as_ref().map(Snapshot::status)
    }

    /// Whether a confirming channel showed the current status change.
    #[must_use]
    pub const fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// Whether the session expired.
    #[must_use]
    pub const fn is_expired(&self) -> bool {
        self.expired
    }

    /// Whether a snapshot contradicted the best one known when it arrived: a person should look
    /// at this session. Stays set.
    #[must_use]
    pub const fn has_conflict(&self) -> bool {
        self.conflicted
    }

    /// The actions asked for so far.
    #[must_use]
    pub const fn asked(&self) -> ActionSet {
        self.asked
    }

    /// Observes a status callback's session snapshot, with the callback's `event_id` if it had
    /// one. Under [`CallbackTrust::Hint`] it never confirms a status.
    pub fn observe_callback(
        &mut self,
        event_id: Option<&str>,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Report<'_> {
        self.observe(Channel::Callback { event_id }, snapshot, now)
    }

    /// Observes the snapshot a read of the session returned.
    pub fn observe_read(&mut self, snapshot: &Snapshot, now: Timestamp) -> Report<'_> {
        self.observe(Channel::Read, snapshot, now)
    }

    /// Observes a read that answered 404 (not found) at `now`.
    ///
    /// # Errors
    /// [`NotFoundError`] when the session's `expires_at` is unknown or later than `now`: then
    /// the 404 means a wrong id or wrong credentials, not expiry, and nothing changes.
    pub fn observe_not_found(&mut self, now: Timestamp) -> Result<Report<'_>, NotFoundError> {
        if self.expired {
            return Ok(self.report(Outcome::Duplicate, ActionSet::EMPTY));
        }
        let expires_at = self.best.as_ref().and_then(Snapshot::expires_at);
        match expires_at {
            Some(at) if now >= at => {
                self.expired = true;
                self.changed_at = Some(now);
                let new = self.ask();
                Ok(self.report(Outcome::Expired, new))
            }
            _ => Err(NotFoundError { now, expires_at }),
        }
    }

    /// When to read the session next (at or after `now`), or `None` when no read is needed any
    /// more (a confirmed final status, or expiry). `Some(now)` means at once. See [`ReadPolicy`].
    #[must_use]
    pub fn next_read(&self, now: Timestamp) -> Option<Timestamp> {
        if self.expired {
            return None;
        }
        let Some(best) = &self.best else {
            return Some(now);
        };
        let is_final = best.status().is_final();
        if is_final && self.confirmed {
            return None;
        }
        let anchor = self.changed_at.unwrap_or(now);
        let at_once = is_final && !self.confirmed;
        Some(self.config.reads.next_slot(anchor, at_once, now))
    }

    fn observe(&mut self, channel: Channel<'_>, snapshot: &Snapshot, now: Timestamp) -> Report<'_> {
        let confirming = match channel {
            Channel::Read => true,
            Channel::Callback { .. } => self.config.trust == CallbackTrust::Verified,
        };
        let event = match channel {
            Channel::Callback { event_id: Some(id) } => Some(event_hash(id)),
            _ => None,
        };
        let outcome = self.reconcile(snapshot, confirming);
        if !outcome.changed() {
            let seen = event.is_some_and(|h| self.events.iter().any(|&e| e == h));
            let outcome = if seen { Outcome::Duplicate } else { outcome };
            return self.report(outcome, ActionSet::EMPTY);
        }
        if let Some(h) = event {
            if self.events.is_full() {
                self.events.pop_front();
            }
            // Cannot fail: there is room now.
            let _ = self.events.push_back(h);
        }
        self.changed_at = Some(now);
        let new = self.ask();
        self.report(outcome, new)
    }

    /// Folds `s` into the best snapshot and the confirmation; says what it did.
    fn reconcile(&mut self, s: &Snapshot, confirming: bool) -> Outcome {
        let Some(best) = &self.best else {
            self.best = Some(s.clone());
            self.confirmed = confirming;
            return Outcome::Advanced {
                from: None,
                to: s.status(),
                skipped: false,
            };
        };
        let same = s.same_change(best);
        let (from, to) = (best.status(), s.status());
        let ordering = precedence(s).cmp(&precedence(best));
        if same && ordering != Ordering::Greater {
            // The same status change (perhaps with an older `expires_at`).
            if confirming && !self.confirmed {
                self.confirmed = true;
                return Outcome::Confirmed(from);
            }
            return Outcome::Duplicate;
        }
        if ordering == Ordering::Less {
            return match contradiction(s, best) {
                Some(kind) => self.conflict(from, to, kind),
                None => Outcome::Stale,
            };
        }
        // `s` has the higher precedence (equal precedence implies the same change).
        let outcome = match contradiction(best, s) {
            Some(kind) => self.conflict(from, to, kind),
            None => Outcome::Advanced {
                from: Some(from),
                to,
                skipped: !same && !table::has_edge(from, to),
            },
        };
        self.confirmed = confirming || (same && self.confirmed);
        self.best = Some(s.clone());
        outcome
    }

    /// Remembers that snapshots contradicted each other.
    fn conflict(&mut self, known: Status, observed: Status, kind: ConflictKind) -> Outcome {
        self.conflicted = true;
        Outcome::Conflict {
            known,
            observed,
            kind,
        }
    }

    /// Asks for what the state warrants and has not been asked for; returns the new kinds.
    fn ask(&mut self) -> ActionSet {
        let mut due = ActionSet::EMPTY;
        let best = self.best.as_ref();
        let status = best.map(Snapshot::status);
        if let Some(best) = best {
            let is_final = best.status().is_final();
            if is_final && !self.confirmed {
                due = due.with(ActionKind::ReadSession);
            }
            if self.confirmed {
                match best.completion() {
                    Some(Completion::Authorized { .. }) => due = due.with(ActionKind::PlaceOrder),
                    Some(Completion::OrderPlaced { .. }) => due = due.with(ActionKind::RecordOrder),
                    None => {}
                }
            }
        }
        let money_known = status == Some(Status::Completed);
        let release = match status {
            _ if money_known => None,
            Some(Status::Cancelled) if self.confirmed => Some(ReleaseReason::Cancelled),
            Some(Status::Disabled) if self.confirmed => Some(ReleaseReason::Disabled),
            _ if self.expired => Some(ReleaseReason::Expired),
            _ => None,
        };
        if let Some(reason) = release {
            due = due.with(ActionKind::Release);
            if !self.asked.contains(ActionKind::Release) {
                self.released = Some(reason);
            }
        }
        let new = due.without(self.asked);
        self.asked = self.asked.union(new);
        new
    }

    fn report(&self, outcome: Outcome, new: ActionSet) -> Report<'_> {
        Report {
            outcome,
            new,
            tracker: self,
        }
    }

    /// The action of `kind` with its data, if the state still has it.
    fn action(&self, kind: ActionKind) -> Option<Action<'_>> {
        let best = self.best.as_ref();
        Some(match kind {
            ActionKind::PlaceOrder => {
                let best = best?;
                let Some(Completion::Authorized {
                    authorization_token,
                }) = best.completion()
                else {
                    return None;
                };
                Action::PlaceOrder {
                    authorization_token,
                    place_by: best.updated_at().saturating_add(AUTHORIZATION_VALIDITY),
                }
            }
            ActionKind::RecordOrder => {
                let Some(Completion::OrderPlaced {
                    order_id,
                    klarna_reference,
                }) = best?.completion()
                else {
                    return None;
                };
                Action::RecordOrder {
                    order_id,
                    klarna_reference,
                }
            }
            ActionKind::Release => Action::Release {
                reason: self.released?,
            },
            ActionKind::ReadSession => Action::ReadSession,
        })
    }
}

/// The precedence of a snapshot (see the module docs): a total order on snapshots.
fn precedence(
    s: &Snapshot,
) -> (
    u8,
    Timestamp,
    Status,
    Option<&Completion>,
    Option<Timestamp>,
) {
    let rank = match s.status() {
        Status::Completed => 2,
        Status::Cancelled | Status::Disabled => 1,
        _ => 0,
    };
    (
        rank,
        s.updated_at(),
        s.status(),
        s.completion(),
        s.expires_at(),
    )
}

/// Why `later` (higher precedence) cannot follow `earlier` in one session's history, if it
/// cannot.
fn contradiction(earlier: &Snapshot, later: &Snapshot) -> Option<ConflictKind> {
    let (a, b) = (earlier.status(), later.status());
    if earlier.same_change(later) {
        return None;
    }
    if a == Status::Completed && b == Status::Completed {
        return Some(ConflictKind::TwoCompletions);
    }
    if a.is_final() && b.is_final() {
        return Some(ConflictKind::TwoFinals);
    }
    if later.updated_at() < earlier.updated_at() || !table::is_reachable(a, b) {
        return Some(ConflictKind::CannotFollow);
    }
    None
}

fn event_hash(event_id: &str) -> u32 {
    let mut h = hash32::FnvHasher::default();
    h.write(event_id.as_bytes());
    hash32::Hasher::finish32(&h)
}

/// What one observation did, and the actions it newly asks for (each at most once per session,
/// listed in [`ActionKind`] order). Borrows the tracker.
#[derive(Clone, Copy, Debug)]
pub struct Report<'t> {
    outcome: Outcome,
    new: ActionSet,
    tracker: &'t Tracker,
}

impl<'t> Report<'t> {
    /// What the observation did.
    #[must_use]
    pub const fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The kinds of the actions newly asked for.
    #[must_use]
    pub const fn action_kinds(&self) -> ActionSet {
        self.new
    }

    /// The actions newly asked for, with their data.
    pub fn actions(&self) -> impl Iterator<Item = Action<'t>> + use<'t> {
        let tracker = self.tracker;
        self.new.iter().filter_map(move |k| tracker.action(k))
    }

    /// The tracker's state after the observation.
    #[must_use]
    pub fn state(&self) -> State<'t> {
        self.tracker.state()
    }
}

/// A 404 that does not mean expiry: `expires_at` is unknown or still ahead. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotFoundError {
    /// When the 404 was observed.
    pub now: Timestamp,
    /// The session's `expires_at`, if known.
    pub expires_at: Option<Timestamp>,
}

impl fmt::Display for NotFoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expires_at {
            Some(at) => write!(
                f,
                "session not found at {} before it expires at {at}: wrong id or credentials",
                self.now
            ),
            None => write!(
                f,
                "session not found at {} and its expiry is unknown: wrong id or credentials?",
                self.now
            ),
        }
    }
}

impl core::error::Error for NotFoundError {}
