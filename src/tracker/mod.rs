//! Reconciling snapshots from callbacks and reads into one state, what the merchant owes for it,
//! and when to read the session next.
//!
//! - this file: the tracker, its state and its public API;
//! - [`reconcile`]: how evidence and hints move the state, and what it asks for;
//! - [`reads`]: the read schedule, reads in flight and failed reads;
//! - [`remembered`]: the callback event ids it remembers.

mod reads;
mod reconcile;
mod remembered;

use core::fmt;
use core::time::Duration;

use crate::action::{Action, ActionId, ActionKind, ActionSet, DisableAnswer, ReleaseReason};
use crate::claim::{Claim, DEFAULT_MAX_CLOCK_SKEW, refuse_future};
use crate::completion::Completion;
use crate::id::SessionId;
use crate::outcome::Outcome;
use crate::precedence::{ChangeKey, change_key, sort_time};
use crate::redirect::Redirect;
use crate::refusal::{OtherSession, Refused};
use crate::schedule::{ReadFailure, ReadPolicy};
use crate::secret::SecretMatched;
use crate::settled::Settled;
use crate::snapshot::{Change, Snapshot};
use crate::status::Status;
use crate::timestamp::Timestamp;

pub use remembered::REMEMBERED_EVENTS;
pub(crate) use remembered::Remembered;
use remembered::hash as event_hash;

/// How a [`Tracker`] schedules reads and weighs unsigned callbacks: the merchant's policy. The
/// caller holds it next to its trackers and passes it to the methods that need it, so a changed
/// policy (a new time limit, a new poll lag) applies to every tracker at once, stored ones
/// included. (Whether a callback is evidence is not a setting: it is, only with the
/// [`SecretMatched`] of its checked secret.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrackerConfig {
    /// When to read the session.
    pub reads: ReadPolicy,
    /// How far an unsigned callback's `updated_at` may be ahead of the caller's `now` before it
    /// is refused as [`FutureHint`](crate::FutureHint). Default [`DEFAULT_MAX_CLOCK_SKEW`] (60 s).
    pub max_clock_skew: Duration,
    /// The merchant's own time limit (Klarna advises disabling sessions after it rather than
    /// leaving them open for their 48 hours): once a session has shown no confirmed sign of
    /// life (a status change, by its `updated_at`; before the first read, its creation) for
    /// this long, the read that finds it so asks once for [`Action::Disable`], and a read falls
    /// due at that moment. `None` (the default) leaves sessions open until they expire.
    pub abandon_after: Option<Duration>,
}

impl TrackerConfig {
    /// [`ReadPolicy::DEFAULT`], 60 s of clock skew, no time limit.
    pub const DEFAULT: Self = Self {
        reads: ReadPolicy::DEFAULT,
        max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
        abandon_after: None,
    };
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The reconciled state of one session: what the tracker knows, and nothing about when or in
/// which order it learned it. Two trackers that saw the same set of observations have equal
/// states (404s count too, when they come after the snapshots, as they do: a session answers
/// 404 only once it expired).
///
/// Everything but [`State::claim`] comes from authenticated evidence only (reads, a disable's
/// 204, and callbacks with a [`SecretMatched`]): no unsigned callback can change it.
///
/// Not part of it: [`Tracker::has_conflict`] and [`Tracker::refuted_claims`] (which pair of
/// observations meets depends on the order), what is owed (it depends on what the caller
/// reported done), and the read schedule (it depends on when things were learned).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State<'t> {
    /// The confirmed status (`None` before the first authenticated evidence).
    pub status: Option<Status>,
    /// The confirmed `updated_at`.
    pub updated_at: Option<Timestamp>,
    /// The confirmed completion data: what money actions use.
    pub completion: Option<&'t Completion>,
    /// The confirmed `expires_at`: what a 404 is judged against.
    pub expires_at: Option<Timestamp>,
    /// Whether a read answered 404 at or after `expires_at`.
    pub expired: bool,
    /// A newer status change that unsigned callbacks claim and that could follow the confirmed
    /// one: awaiting confirmation ([`Tracker::claim`]).
    pub claim: Option<Claim>,
}

/// One HPP session as an integrator sees it, reconciled from snapshots (callbacks and reads),
/// 404s and the answers to its disable, with what the merchant owes for it. Sans-I/O, like
/// quinn-proto's `Connection`: the caller passes `now` and the policy ([`TrackerConfig`]) in,
/// and drains what the tracker owes ([`Tracker::actions`], [`Tracker::done`]) and when it wants
/// a read ([`Tracker::next_read`], [`Tracker::start_read`]).
///
/// # Two kinds of evidence
///
/// Reads are authenticated (merchant credentials over TLS); status callbacks are not signed, and
/// anyone who learns the callback URL can post one. So under [`Tracker::observe_callback`] a
/// callback is a *hint*: it may make the integrator read sooner and is shown as a [`Claim`]
/// awaiting confirmation, but it never decides money, release or expiry, never outranks, hides,
/// delays or blocks what reads show, and never pages a person: a hint that confirmed evidence
/// shows false is counted ([`Tracker::refuted_claims`]), not flagged. Only *confirmed* evidence
/// (reads, the disable's 204, and callbacks whose secret was checked,
/// [`Tracker::observe_verified_callback`]) moves the state that actions come from.
///
/// # How snapshots are ordered
///
/// Every status change has a *precedence*: `COMPLETED` above the other final statuses, final
/// statuses above the rest, then later `updated_at` above earlier, then the status and the
/// completion data as deterministic tie-breaks. The tracker keeps the confirmed change of
/// highest precedence it has seen (the *best*), and the highest hint that outranked the best
/// when it came (the *claim*); the claim is shown while it still outranks the best and could
/// follow it in one history. Both are functions of the *set* of observations: neither the order
/// nor repetition matters, and a lost snapshot in between never keeps the tracker from taking
/// the newest one.
///
/// # What it owes
///
/// After every observation the tracker compares what the confirmed state warrants with what it
/// has already asked for, and asks for the difference, so each kind is asked for at most once:
/// place the order (a confirmed `COMPLETED` with a token and no order id), record the order (a
/// confirmed `COMPLETED` with an order id), review (a confirmed `COMPLETED` whose data cannot be
/// acted on), release the cart (a confirmed `CANCELLED` or `DISABLED`, or expiry, never once a
/// `COMPLETED` was confirmed), disable (the merchant's time limit passed). What it asked for
/// stays owed, in its state, until the caller reports it [`done`](Tracker::done): a caller that
/// stores the tracker stores what is owed, so a dropped return value, a crash between two writes
/// or a restore from storage loses nothing, and done twice is done once.
///
/// `SPEC.md` states the rules precisely and names the test behind each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    /// The session it tracks: set at creation ([`Tracker::for_session`]) or by the first
    /// confirmed snapshot that names one. Snapshots of other sessions are refused.
    session: Option<SessionId>,
    /// The confirmed change of highest precedence.
    best: Option<Change>,
    /// The `expires_at` of the confirmed snapshot of highest change key that stated one: a
    /// newer read without the field keeps what is known.
    expiry: Option<Expiry>,
    /// The highest hint that outranked `best` when it came.
    claim: Option<Claim>,
    /// What has been asked for, ever.
    asked: ActionSet,
    /// What has been asked for and not reported done.
    owed: ActionSet,
    /// Why the cart was released, once it was.
    released: Option<ReleaseReason>,
    expired: bool,
    /// Confirmed evidence contradicted confirmed evidence, or money met a release.
    conflicted: bool,
    /// Hints that confirmed evidence showed false (saturating).
    refuted: u8,
    /// When (the caller's clock) the confirmed state last changed: the anchor of the blind
    /// schedule's back-off.
    changed_at: Option<Timestamp>,
    /// When a read became urgent ([`crate::Urgency::Confirm`]: a final status claimed, a
    /// redirect, a disable asked or refused); cleared by the next read started after it.
    urgent_since: Option<Timestamp>,
    /// When the session was last read (a 200, or a 404 taken as expiry; the read's start when
    /// the caller said when it started it): the guarantee counts from it. For a tracker made by
    /// [`Tracker::created`], the creation until the first read: Klarna's authenticated answer
    /// to the create call said `WAITING` then.
    last_read: Option<Timestamp>,
    /// When the read in flight started ([`Tracker::start_read`]), until it is answered.
    reading_since: Option<Timestamp>,
    /// No read before this, after failed reads (the back-off), while they fail.
    retry_at: Option<Timestamp>,
    /// Consecutive failed reads (0 once a read answers).
    failures: u8,
    /// Callbacks that changed the tracker, by the hash of their `event_id`.
    events: Remembered,
}

/// The back-off after consecutive failed reads, as persistence stores it.
#[cfg(feature = "serde")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Retry {
    /// No read before this.
    pub(crate) at: Timestamp,
    /// Consecutive failures so far.
    pub(crate) failures: u8,
}

/// A confirmed `expires_at`, with the status change that stated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Expiry {
    /// The `expires_at`.
    pub(crate) at: Timestamp,
    /// That snapshot's `updated_at` ([`Timestamp::MIN`] when undated).
    pub(crate) stated_at: Timestamp,
    /// The status of the snapshot that stated it.
    pub(crate) status: Status,
}

impl Expiry {
    /// The expiry `s` states, if it states one.
    pub(crate) fn of(s: &Snapshot) -> Option<Self> {
        Some(Self {
            at: s.expires_at()?,
            status: s.status(),
            stated_at: sort_time(s.change()),
        })
    }

    /// Which of two stated expiries is the newer: that of the higher change, then the later.
    pub(crate) fn rank(&self) -> (ChangeKey, Timestamp) {
        (change_key(self.status, self.stated_at), self.at)
    }
}

/// A tracker's parts as persistence stores them: read by [`Tracker::parts`], and made into a
/// tracker again only by [`Tracker::restore`], which checks that they fit together.
#[cfg(feature = "serde")]
pub(crate) struct Parts {
    pub(crate) session: Option<SessionId>,
    pub(crate) best: Option<Change>,
    pub(crate) expiry: Option<Expiry>,
    pub(crate) claim: Option<Claim>,
    pub(crate) asked: ActionSet,
    pub(crate) owed: ActionSet,
    pub(crate) released: Option<ReleaseReason>,
    pub(crate) expired: bool,
    pub(crate) conflicted: bool,
    pub(crate) refuted: u8,
    pub(crate) changed_at: Option<Timestamp>,
    pub(crate) urgent_since: Option<Timestamp>,
    pub(crate) last_read: Option<Timestamp>,
    pub(crate) reading_since: Option<Timestamp>,
    pub(crate) retry: Option<Retry>,
    pub(crate) events: heapless::Vec<u32, REMEMBERED_EVENTS>,
}

/// What a settled session carries back into a revived tracker ([`Tracker::revived`]).
pub(crate) struct Carried {
    pub(crate) best: Option<Change>,
    pub(crate) expiry: Option<Expiry>,
    pub(crate) claim: Option<Claim>,
    pub(crate) asked: ActionSet,
    pub(crate) released: Option<ReleaseReason>,
    pub(crate) expired: bool,
    pub(crate) conflicted: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// A tracker that knows nothing yet: it wants a read at once.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            session: None,
            best: None,
            expiry: None,
            claim: None,
            asked: ActionSet::EMPTY,
            owed: ActionSet::EMPTY,
            released: None,
            expired: false,
            conflicted: false,
            refuted: 0,
            changed_at: None,
            urgent_since: None,
            last_read: None,
            reading_since: None,
            retry_at: None,
            failures: 0,
            events: Remembered::EMPTY,
        }
    }

    /// A tracker of the session `session_id` that knows nothing else yet: it wants a read at
    /// once. Snapshots of any other session are refused ([`Refused::OtherSession`]).
    #[must_use]
    pub fn for_session(session_id: SessionId) -> Self {
        Self {
            session: Some(session_id),
            ..Self::new()
        }
    }

    /// A tracker of the session `session_id`, created at `created_at`: what an integrator makes
    /// from Klarna's create-session response. That response is authenticated and says the
    /// session exists from now on (`WAITING`), so it counts as the first read: the next one is
    /// a blind one, [`ReadPolicy::first`] after creation (within the guarantee), the time
    /// limit counts from creation, and hints bring reads forward as always. (Its status stays
    /// unknown, [`Tracker::is_confirmed`] false, until a read: the caller's clock is not
    /// Klarna's `updated_at`.) [`Tracker::for_session`] reads at once instead.
    #[must_use]
    pub fn created(session_id: SessionId, created_at: Timestamp) -> Self {
        Self {
            changed_at: Some(created_at),
            last_read: Some(created_at),
            ..Self::for_session(session_id)
        }
    }

    /// The session it tracks, once known.
    #[must_use]
    pub const fn session_id(&self) -> Option<&SessionId> {
        self.session.as_ref()
    }

    /// Refuses a snapshot of another session than this tracker's.
    fn check_session(&self, observed: Option<&SessionId>) -> Result<(), OtherSession> {
        match (&self.session, observed) {
            (Some(mine), Some(theirs)) if mine != theirs => Err(OtherSession::new(mine, theirs)),
            _ => Ok(()),
        }
    }

    /// Binds the tracker to the session a confirmed snapshot names, if it is not bound yet.
    fn learn_session(&mut self, snapshot: &Snapshot) {
        if let Some(session) = snapshot.session_id() {
            self.bind(session);
        }
    }

    /// Binds the tracker to `session` if it is bound to none yet: only from what the merchant
    /// knows first-hand (a confirmed snapshot, a checked secret, its own disable's answer or
    /// report of done), never from a hint, which anyone can post for any id.
    fn bind(&mut self, session: &SessionId) {
        if self.session.is_none() {
            self.session = Some(session.clone());
        }
    }

    /// The settled session, once this one settled: a confirmed final status, or expiry, and
    /// nothing owed. Every action it warrants has been asked for and done then, and a
    /// [`Settled`] (64 bytes) answers whatever reappears without asking anything twice.
    #[must_use]
    pub fn settled(&self) -> Option<Settled> {
        let best = self.best.as_ref()?;
        let ended = best.status().is_final() || self.expired;
        (ended && self.owed.is_empty()).then(|| {
            Settled::new(
                best,
                self.expiry,
                self.claim,
                self.asked,
                self.released,
                self.expired,
                self.conflicted,
            )
        })
    }

    /// A tracker that continues from a settled session ([`Settled::revive`]).
    pub(crate) fn revived(session: Option<SessionId>, c: Carried) -> Self {
        Self {
            session,
            best: c.best,
            expiry: c.expiry,
            claim: c.claim,
            asked: c.asked,
            released: c.released,
            expired: c.expired,
            conflicted: c.conflicted,
            ..Self::new()
        }
    }

    /// The tracker these stored parts describe: the one place a tracker is made other than by
    /// observing.
    ///
    /// # Errors
    /// Why the parts do not fit together: a confirmed state, an expiry or an action without
    /// confirmed evidence, something owed that was never asked, a release reason without a
    /// release asked (or the reverse).
    #[cfg(feature = "serde")]
    pub(crate) fn restore(parts: Parts) -> Result<Self, &'static str> {
        let Parts {
            session,
            best,
            expiry,
            claim,
            asked,
            owed,
            released,
            expired,
            conflicted,
            refuted,
            changed_at,
            urgent_since,
            last_read,
            reading_since,
            retry,
            events,
        } = parts;
        if best.is_none() && (expired || !asked.is_empty() || expiry.is_some()) {
            return Err("a tracker without confirmed evidence has no confirmed state");
        }
        if !owed.without(asked).is_empty() {
            return Err("a tracker owes only what it asked for");
        }
        if asked.contains(ActionKind::Release) != released.is_some() {
            return Err("`released` must be set exactly when a release was asked");
        }
        let tracker = Self {
            session,
            best,
            expiry,
            claim,
            asked,
            owed,
            released,
            expired,
            conflicted,
            refuted,
            changed_at,
            urgent_since,
            last_read,
            reading_since,
            retry_at: retry.map(|r| r.at),
            failures: retry.map_or(0, |r| r.failures),
            events: Remembered::of(events).ok_or("too many remembered events")?,
        };
        if tracker.owed.iter().any(|k| tracker.action(k).is_none()) {
            return Err("a tracker owes only actions its confirmed state has the data of");
        }
        Ok(tracker)
    }

    /// The tracker's parts, for persistence.
    #[cfg(feature = "serde")]
    pub(crate) fn parts(&self) -> Parts {
        Parts {
            session: self.session.clone(),
            best: self.best.clone(),
            expiry: self.expiry,
            claim: self.claim,
            asked: self.asked,
            owed: self.owed,
            released: self.released,
            expired: self.expired,
            conflicted: self.conflicted,
            refuted: self.refuted,
            changed_at: self.changed_at,
            urgent_since: self.urgent_since,
            last_read: self.last_read,
            reading_since: self.reading_since,
            retry: self.retry_at.map(|at| Retry {
                at,
                failures: self.failures,
            }),
            events: self.events.oldest_first().collect(),
        }
    }

    /// The reconciled state.
    #[must_use]
    pub fn state(&self) -> State<'_> {
        State {
            status: self.status(),
            updated_at: self.best.as_ref().and_then(Change::updated_at),
            completion: self.best.as_ref().and_then(Change::completion),
            expires_at: self.expiry.map(|e| e.at),
            expired: self.expired,
            claim: self.claim(),
        }
    }

    /// The confirmed status.
    #[must_use]
    pub fn status(&self) -> Option<Status> {
        self.best.as_ref().map(Change::status)
    }

    /// The newer status change unsigned callbacks claim, while it outranks the confirmed status
    /// and could follow it in one history: show it as awaiting confirmation, read soon, act on
    /// nothing in it.
    #[must_use]
    pub fn claim(&self) -> Option<Claim> {
        match self.claim_standing() {
            reconcile::Standing::Open(claim) => Some(claim),
            reconcile::Standing::None | reconcile::Standing::Refuted => None,
        }
    }

    /// Whether authenticated evidence (a read, a disable's 204, or a verified callback) has
    /// shown the session: [`Tracker::status`] and every action come from it. Unsigned callbacks
    /// never change it.
    #[must_use]
    pub const fn is_confirmed(&self) -> bool {
        self.best.is_some()
    }

    /// Whether the session expired.
    #[must_use]
    pub const fn is_expired(&self) -> bool {
        self.expired
    }

    /// Whether confirmed evidence contradicted confirmed evidence (two finals, two
    /// completions), or the session got both a release and a money action: a person should
    /// look at this session. Stays set. Hints never set it: one that confirmed evidence shows
    /// false is a refuted claim ([`Tracker::refuted_claims`]).
    #[must_use]
    pub const fn has_conflict(&self) -> bool {
        self.conflicted
    }

    /// How many unsigned claims confirmed evidence showed false, in either order (a read
    /// refuted a claim, or a hint came that contradicts what was confirmed): a sign that
    /// someone forges callbacks, not a reason to page a person. Saturates at 255.
    #[must_use]
    pub const fn refuted_claims(&self) -> u8 {
        self.refuted
    }

    /// The actions asked for so far, done or not.
    #[must_use]
    pub const fn asked(&self) -> ActionSet {
        self.asked
    }

    /// The actions asked for and not reported done: what the merchant owes.
    #[must_use]
    pub const fn owed(&self) -> ActionSet {
        self.owed
    }

    /// The actions owed, with their data, money first ([`ActionKind`] order). Each stays owed
    /// until [`Tracker::done`]: store the tracker, perform them, report each done.
    pub fn actions(&self) -> impl Iterator<Item = Action> + '_ {
        self.owed.iter().filter_map(|k| self.action(k))
    }

    /// The first action owed (money first), with its data: what an executor performs next.
    /// It stays owed until [`Tracker::done`], so a loop that performs it and reports it done
    /// drains what is owed; one that cannot perform it (Klarna is down, the outcome of an
    /// attempt is unknown) must stop, not ask again at once.
    #[must_use]
    pub fn next_action(&self) -> Option<Action> {
        self.actions().next()
    }

    /// The action of `kind` with its data, if it is owed. Its data comes from the confirmed
    /// state: what the tracker knows now.
    #[must_use]
    pub fn action(&self, kind: ActionKind) -> Option<Action> {
        if !self.owed.contains(kind) {
            return None;
        }
        let best = self.best.as_ref();
        let completion = best.and_then(Change::completion);
        Some(match (kind, completion) {
            (
                ActionKind::PlaceOrder,
                Some(Completion::Authorized {
                    authorization_token,
                }),
            ) => Action::PlaceOrder {
                authorization_token: authorization_token.clone(),
                place_by: best?.updated_at().map(crate::action::place_by),
            },
            (
                ActionKind::RecordOrder,
                Some(Completion::OrderPlaced {
                    order_id,
                    klarna_reference,
                }),
            ) => Action::RecordOrder {
                order_id: order_id.clone(),
                klarna_reference: klarna_reference.clone(),
            },
            (ActionKind::ReviewCompletion, Some(Completion::Unusable(problem))) => {
                Action::ReviewCompletion { problem: *problem }
            }
            (ActionKind::Release, _) => Action::Release {
                reason: self.released?,
            },
            (ActionKind::Disable, _) => Action::Disable,
            _ => return None,
        })
    }

    /// Reports the action `id` done: its effect happened, or is known not to be needed. It is
    /// owed no more; reporting it again changes nothing. An attempt whose outcome is unknown (a
    /// create-order call that timed out) is not done: leave it owed and resolve it first (read
    /// the payment session: a placed order closes it). A disable is done by reporting Klarna's
    /// answer ([`Tracker::observe_disable_answer`]).
    ///
    /// A tracker bound to no session yet (made by [`Tracker::new`] and fed bodies that name
    /// none, as Klarna's own fixtures do) is bound to the session `id` names, so that it can be
    /// drained and settle, and a later mixed-up id is refused. Bind trackers when the session
    /// is created ([`Tracker::for_session`], [`Tracker::created`]) and the first id cannot be
    /// mixed up either.
    ///
    /// # Errors
    /// Nothing changes when it is refused: [`Refused::OtherSession`] when `id` names another
    /// session than the tracker's (a mixed-up id must not mark another session's order
    /// placed); [`Refused::NotAsked`] when this tracker never asked for that kind.
    pub fn done(&mut self, id: ActionId<'_>) -> Result<(), Refused> {
        self.check_session(Some(id.session_id))
            .map_err(Refused::OtherSession)?;
        if !self.asked.contains(id.kind) {
            return Err(Refused::NotAsked(id.kind));
        }
        self.bind(id.session_id);
        self.owed = self.owed.without(ActionSet::EMPTY.with(id.kind));
        Ok(())
    }

    /// Observes a status callback's session snapshot, with the callback's `event_id` if it had
    /// one, as a hint: what it says is a [`Claim`] that may make the integrator read sooner and
    /// never decides money, release or expiry. (A callback whose secret was checked is
    /// evidence: [`Tracker::observe_verified_callback`].)
    ///
    /// # Errors
    /// Nothing changes when it is refused: [`Refused::OtherSession`] for a snapshot of another
    /// session than the tracker's; [`Refused::FutureHint`] when the snapshot's `updated_at` is
    /// more than [`TrackerConfig::max_clock_skew`] after `now`.
    pub fn observe_callback(
        &mut self,
        config: &TrackerConfig,
        event_id: Option<&str>,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<Report, Refused> {
        self.check_session(snapshot.session_id())
            .map_err(Refused::OtherSession)?;
        refuse_future(snapshot.updated_at(), now, config.max_clock_skew)?;
        let was_conflicted = self.conflicted;
        let event = event_id.map(event_hash);
        let seen = event.is_some_and(|h| self.events.contains(h));
        let outcome = self.weigh_hint(snapshot, now, seen);
        Ok(self.settle(event, outcome, was_conflicted, None))
    }

    /// Observes a status callback whose per-session secret matched ([`SecretMatched`], from
    /// [`crate::callback_secret_matches`]): evidence, like a read. It binds the tracker to the
    /// session whose secret matched. However late it comes, it never puts a read off: a change
    /// it shows may bring the next blind read forward ([`crate::ReadPolicy::blind_due`]), and a
    /// read that fell due stays due.
    ///
    /// # Errors
    /// [`Refused::OtherSession`] when the secret was checked for another session than the
    /// tracker's, or the snapshot names another session than the one whose secret matched:
    /// nothing changes.
    pub fn observe_verified_callback(
        &mut self,
        checked: SecretMatched,
        event_id: Option<&str>,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<Report, Refused> {
        let SecretMatched { session } = checked;
        self.check_session(Some(&session))
            .map_err(Refused::OtherSession)?;
        if let Some(theirs) = snapshot.session_id().filter(|&theirs| *theirs != session) {
            return Err(Refused::OtherSession(OtherSession::new(&session, theirs)));
        }
        self.bind(&session);
        let was_conflicted = self.conflicted;
        let outcome = self.reconcile(snapshot, now);
        Ok(self.settle(event_id.map(event_hash), outcome, was_conflicted, None))
    }

    /// Observes the snapshot a read of the session returned at `now` (when the answer came).
    /// Only a body your own authenticated `GET` returned: never a callback's snapshot, which is
    /// [`Tracker::observe_callback`]'s (passing it here would make a forged callback evidence).
    /// The first that names its session binds the tracker to it (unless
    /// [`Tracker::for_session`] did). A read is a read
    /// even when it changes nothing: the schedule counts from it ([`Tracker::next_read`]; from
    /// its start, when [`Tracker::start_read`] said when that was). The read that finds the
    /// session past [`TrackerConfig::abandon_after`] asks for [`Action::Disable`].
    ///
    /// # Errors
    /// [`Refused::OtherSession`] for a snapshot of another session than the tracker's: nothing
    /// changes (a read started stays in flight, and counts as failed after
    /// [`READ_TIMEOUT`](crate::READ_TIMEOUT)).
    pub fn observe_read(
        &mut self,
        config: &TrackerConfig,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<Report, Refused> {
        self.check_session(snapshot.session_id())
            .map_err(Refused::OtherSession)?;
        self.learn_session(snapshot);
        let read_at = self.answered(now);
        let was_conflicted = self.conflicted;
        let outcome = self.reconcile(snapshot, read_at);
        let abandoned = self
            .abandon_deadline(config)
            .is_some_and(|deadline| read_at >= deadline)
            .then_some(read_at);
        Ok(self.settle(None, outcome, was_conflicted, abandoned))
    }

    /// Observes a read of the session that failed at `now` ([`ReadFailure`]): it says nothing
    /// about the session, and the next read backs off (1 s, 2 s, 4 s, … up to
    /// [`MAX_READ_BACKOFF`](crate::MAX_READ_BACKOFF), less a spread of up to half drawn from
    /// the session id; after a 429, never before its `X-Ratelimit-Reset` and spread over the
    /// second after it). The read keeps its urgency; once reads answer again, the schedule goes
    /// on as if the failures had not been.
    pub fn observe_read_failure(&mut self, failure: ReadFailure, now: Timestamp) {
        self.reading_since = None;
        self.fail(failure, now);
    }

    /// Observes the consumer's browser arriving at one of the merchant's redirect URLs for
    /// `session_id` (the `{{session_id}}` Klarna substitutes) at `now`. Anyone can open that
    /// URL, so it is a hint like an unsigned callback, and less: it decides nothing and claims
    /// nothing. A redirect that suggests a final status (`success`, `cancel`) makes a read due
    /// at once ([`crate::Urgency::Confirm`], at most one every [`ReadPolicy::hint_gap`]);
    /// `failure`, `back` and `error` suggest a status the consumer may retry from, and ask for
    /// nothing (like a callback claiming such a status). Put no token in a redirect URL: the
    /// read brings the token when it is real.
    ///
    /// # Errors
    /// [`Refused::OtherSession`] when `session_id` is not the tracker's session: nothing
    /// changes.
    pub fn observe_redirect(
        &mut self,
        session_id: &SessionId,
        redirect: Redirect,
        now: Timestamp,
    ) -> Result<Report, Refused> {
        self.check_session(Some(session_id))
            .map_err(Refused::OtherSession)?;
        let settled = self.expired || self.status().is_some_and(Status::is_final);
        let suggests = redirect.status();
        let outcome = if settled {
            Outcome::Stale
        } else if !suggests.is_final() {
            // Like a callback claiming a status that is not final: nothing a read must confirm.
            Outcome::Redirected(suggests)
        } else if self.urgent_since.is_some() {
            Outcome::Duplicate
        } else {
            self.urgent_since = Some(now);
            Outcome::Redirected(suggests)
        };
        Ok(Report::new(outcome, ActionSet::EMPTY))
    }

    /// Observes a read that answered 404 (not found) at `now`.
    ///
    /// # Errors
    /// [`NotFoundError`] when the confirmed `expires_at` is unknown or later than `now`: then
    /// the 404 means a wrong id or wrong credentials, not expiry, and nothing changes (a read
    /// started stays in flight, and counts as failed after
    /// [`READ_TIMEOUT`](crate::READ_TIMEOUT)). An unsigned callback's `expires_at` never
    /// counts.
    pub fn observe_not_found(&mut self, now: Timestamp) -> Result<Report, NotFoundError> {
        if self.expired {
            // An answer all the same: the read in flight, if any, ended.
            self.reading_since = None;
            return Ok(Report::new(Outcome::Duplicate, ActionSet::EMPTY));
        }
        let expires_at = self.expiry.map(|e| e.at);
        match expires_at {
            Some(at) if now >= at => {
                self.answered(now);
                self.expired = true;
                self.changed_at = Some(now);
                let new = self.ask(None);
                Ok(Report::new(Outcome::Expired, new))
            }
            _ => Err(NotFoundError { now, expires_at }),
        }
    }

    /// Observes Klarna's answer to the merchant's `DELETE` of session `session_id` at `now`,
    /// and marks [`Action::Disable`] done if it was owed. A 204 is authenticated evidence that
    /// the session is `DISABLED` (undated: a later `DISABLED` read of it is the same change, and
    /// a `CANCELLED` one no contradiction): the cart is released, even if every later read
    /// fails. A 400 (final already: the consumer paid or cancelled first) or a 404 changes no
    /// state and makes a read due at once: the read decides ([`Outcome::DisableRefused`]).
    ///
    /// A tracker bound to no session yet is bound to `session_id`, as by [`Tracker::done`].
    ///
    /// # Errors
    /// [`Refused::OtherSession`] when `session_id` is not the tracker's session (the answer of
    /// another session's disable must not end this one): nothing changes.
    pub fn observe_disable_answer(
        &mut self,
        session_id: &SessionId,
        answer: DisableAnswer,
        now: Timestamp,
    ) -> Result<Report, Refused> {
        self.check_session(Some(session_id))
            .map_err(Refused::OtherSession)?;
        self.bind(session_id);
        let was_conflicted = self.conflicted;
        let outcome = match answer {
            DisableAnswer::Disabled => {
                self.reconcile(&Snapshot::of_change(Change::disabled_undated(), None), now)
            }
            DisableAnswer::AlreadyFinal | DisableAnswer::NotFound => {
                if self.urgent_since.is_none() && !self.expired {
                    self.urgent_since = Some(now);
                }
                Outcome::DisableRefused(answer)
            }
        };
        let report = self.settle(None, outcome, was_conflicted, None);
        self.owed = self
            .owed
            .without(ActionSet::EMPTY.with(ActionKind::Disable));
        Ok(report)
    }
}

/// What one observation did, and the actions it added to what the tracker owes (each asked for
/// at most once per session). A plain value: dropping it loses nothing, since what is owed stays
/// in the tracker ([`Tracker::actions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Report {
    outcome: Outcome,
    new: ActionSet,
}

impl Report {
    const fn new(outcome: Outcome, new: ActionSet) -> Self {
        Self { outcome, new }
    }

    /// What the observation did.
    #[must_use]
    pub const fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The kinds this observation newly asked for (for a log line; perform what
    /// [`Tracker::actions`] owes).
    #[must_use]
    pub const fn newly_owed(&self) -> ActionSet {
        self.new
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
