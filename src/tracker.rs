//! Reconciling snapshots from callbacks and reads into one state and exactly-once actions.

use core::cmp::Ordering;
use core::fmt;
use core::hash::Hasher as _;
use core::time::Duration;

use crate::action::{AUTHORIZATION_VALIDITY, Action, ActionKind, ActionSet, ReleaseReason};
use crate::claim::{Claim, DEFAULT_MAX_CLOCK_SKEW, refuse_future};
use crate::completion::Completion;
use crate::id::SessionId;
use crate::outcome::{ConflictKind, Outcome};
use crate::precedence::{
    ChangeKey, Pair, change_key, contradiction, precedence, snapshots_contradict, sort_time,
};
use crate::redirect::Redirect;
use crate::refusal::{OtherSession, Refused};
use crate::schedule::{MIN_READ_INTERVAL, NextRead, ReadFailure, ReadPolicy, Urgency, backoff};
use crate::secret::SecretMatched;
use crate::settled::Settled;
use crate::snapshot::Snapshot;
use crate::status::Status;
use crate::table;
use crate::timestamp::Timestamp;

/// How many recent callback `event_id`s a tracker remembers (as 32-bit hashes) to report
/// re-deliveries as duplicates. Correctness never depends on it: a forgotten or colliding id only
/// changes how an observation that changes nothing is labelled (`Stale` or `Duplicate`).
pub const REMEMBERED_EVENTS: usize = 16;

/// How a [`Tracker`] schedules reads and weighs unsigned callbacks. (Whether a callback is
/// evidence is not a setting: it is, only with the [`SecretMatched`] of its checked secret.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrackerConfig {
    /// When to read the session.
    pub reads: ReadPolicy,
    /// How far an unsigned callback's `updated_at` may be ahead of the caller's `now` before it
    /// is refused as [`FutureHint`](crate::FutureHint). Default [`DEFAULT_MAX_CLOCK_SKEW`] (60 s).
    pub max_clock_skew: Duration,
    /// The merchant's own time limit (Klarna advises disabling sessions after it rather than
    /// leaving them open for their 48 hours): once the confirmed state has shown no sign of
    /// life (a status change, by its `updated_at`) for this long, the read that finds it so asks
    /// once for [`Action::Disable`], and a read falls due at that moment. `None` (the default)
    /// leaves sessions open until they expire.
    pub abandon_after: Option<Duration>,
}

impl TrackerConfig {
    /// [`ReadPolicy::DEFAULT`], 60 s of clock skew.
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
/// Everything but [`State::claim`] comes from authenticated evidence only (reads, and callbacks
/// with a [`SecretMatched`]): no unsigned callback can change it.
///
/// Not part of it: [`Tracker::has_conflict`], a warning flag raised when an observation
/// contradicts what was known at the time (with contradictory input, which pair meets depends on
/// the order), and the read schedule, which depends on when things were learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State<'t> {
    /// The confirmed status (`None` before the first authenticated snapshot).
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

/// One HPP session as an integrator sees it, reconciled from snapshots (callbacks and reads) and
/// 404s, with the merchant's actions asked for exactly once. Sans-I/O: the caller passes `now`,
/// and the tracker returns what to do as values ([`Report`]).
///
/// # Two kinds of evidence
///
/// Reads are authenticated (merchant credentials over TLS); status callbacks are not signed, and
/// anyone who learns the callback URL can post one. So under the default
/// [`Tracker::observe_callback`] a callback is a *hint*: it may make the integrator read sooner and is
/// shown as a [`Claim`] awaiting confirmation, but it never decides money, release or expiry, and
/// never outranks, hides, delays or blocks what reads show. Only *confirmed* evidence (reads, and
/// callbacks whose secret was checked, [`Tracker::observe_verified_callback`]) moves the state that actions come from.
///
/// # How snapshots are ordered
///
/// Every snapshot has a *precedence*: `COMPLETED` above the other final statuses, final
/// statuses above the rest, then later `updated_at` above earlier, then the status, the
/// completion data and `expires_at` as deterministic tie-breaks. The tracker keeps the confirmed
/// snapshot of highest precedence it has seen (the *best*), and the highest hint that outranked
/// the best when it came (the *claim*); the claim is shown while it still outranks the best and
/// could follow it in one history. Both are functions of the *set* of observations: neither the
/// order nor repetition matters, and a lost snapshot in between never keeps the tracker from
/// taking the newest one.
///
/// # Actions
///
/// After every observation the tracker compares what the confirmed state warrants with what it
/// has already asked for, and asks for the difference, so each kind is asked for at most once:
/// place the order (a confirmed `COMPLETED` with a token and no order id), record the order (a
/// confirmed `COMPLETED` with an order id), review (a confirmed `COMPLETED` whose data cannot be
/// acted on), release the cart (a confirmed `CANCELLED` or `DISABLED`, or expiry, never once a
/// `COMPLETED` was confirmed), read the session (a final status only a hint claims).
///
/// `SPEC.md` states the rules precisely and names the test behind each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    config: TrackerConfig,
    /// The session it tracks: set at creation ([`Tracker::for_session`]) or by the first
    /// confirmed snapshot that names one. Snapshots of other sessions are refused.
    session: Option<SessionId>,
    /// The confirmed snapshot of highest precedence.
    best: Option<Snapshot>,
    /// The highest hint that outranked `best` when it came.
    claim: Option<Claim>,
    expired: bool,
    conflicted: bool,
    /// What has been asked for already.
    asked: ActionSet,
    /// Why the cart was released, once it was.
    released: Option<ReleaseReason>,
    /// When (the caller's `now`) the confirmed state last changed: the anchor of the read
    /// schedule.
    changed_at: Option<Timestamp>,
    /// When a read became urgent ([`Urgency::Confirm`]: a final status claimed, a redirect, a
    /// disable asked); cleared by the next read.
    urgent_since: Option<Timestamp>,
    /// When the session was last read (200 or 404): the schedule counts from it.
    last_read: Option<Timestamp>,
    /// The back-off after failed reads, while they fail.
    retry: Option<Retry>,
    /// Hashes of the `event_id`s of callbacks that changed the tracker, oldest first.
    events: heapless::Deque<u32, REMEMBERED_EVENTS>,
    /// The `expires_at` of the confirmed snapshot of highest change key that stated one: a
    /// newer read without the field keeps what is known.
    expiry: Option<Expiry>,
}

/// The back-off after consecutive failed reads.
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
    /// The status of the snapshot that stated it.
    pub(crate) status: Status,
    /// That snapshot's `updated_at` ([`Timestamp::MIN`] when undated).
    pub(crate) stated_at: Timestamp,
}

impl Expiry {
    /// The expiry `s` states, if it states one.
    pub(crate) fn of(s: &Snapshot) -> Option<Self> {
        Some(Self {
            at: s.expires_at()?,
            status: s.status(),
            stated_at: sort_time(s),
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
    pub(crate) config: TrackerConfig,
    pub(crate) best: Option<Snapshot>,
    pub(crate) claim: Option<Claim>,
    pub(crate) expired: bool,
    pub(crate) conflicted: bool,
    pub(crate) asked: ActionSet,
    pub(crate) released: Option<ReleaseReason>,
    pub(crate) changed_at: Option<Timestamp>,
    pub(crate) urgent_since: Option<Timestamp>,
    pub(crate) last_read: Option<Timestamp>,
    pub(crate) retry: Option<Retry>,
    pub(crate) events: heapless::Vec<u32, REMEMBERED_EVENTS>,
    /// `None` from trackers stored before the expiry was kept apart: the best snapshot's then.
    pub(crate) expiry: Option<Expiry>,
}

/// What a settled session carries back into a revived tracker ([`Tracker::revived`]).
pub(crate) struct Carried {
    pub(crate) best: Option<Snapshot>,
    pub(crate) expiry: Option<Expiry>,
    pub(crate) claim: Option<Claim>,
    pub(crate) asked: ActionSet,
    pub(crate) released: Option<ReleaseReason>,
    pub(crate) expired: bool,
    pub(crate) conflicted: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(TrackerConfig::DEFAULT)
    }
}

impl Tracker {
    /// A tracker that knows nothing yet.
    #[must_use]
    pub const fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            session: None,
            best: None,
            claim: None,
            expired: false,
            conflicted: false,
            asked: ActionSet::EMPTY,
            released: None,
            changed_at: None,
            urgent_since: None,
            last_read: None,
            retry: None,
            events: heapless::Deque::new(),
            expiry: None,
        }
    }

    /// A tracker of the session `session_id` that knows nothing else yet: what an integrator
    /// makes from the create-session response (authenticated, it carries `session_id`).
    #[must_use]
    pub fn for_session(session_id: SessionId, config: TrackerConfig) -> Self {
        Self {
            session: Some(session_id),
            ..Self::new(config)
        }
    }

    /// A tracker of the session `session_id`, created at `created_at`: what an integrator makes
    /// from Klarna's create-session response. That response is authenticated and says the
    /// session exists from now on (`WAITING`), so the tracker need not read it at once: its
    /// first read is a blind one, [`ReadPolicy::first`] after creation, and hints bring it
    /// forward as always. (Its status stays unknown, [`Tracker::is_confirmed`] false, until
    /// the first read.) [`Tracker::for_session`] reads at once instead.
    #[must_use]
    pub fn created(session_id: SessionId, created_at: Timestamp, config: TrackerConfig) -> Self {
        Self {
            changed_at: Some(created_at),
            ..Self::for_session(session_id, config)
        }
    }

    /// The session it tracks, once known.
    #[must_use]
    pub const fn session_id(&self) -> Option<&SessionId> {
        self.session.as_ref()
    }

    /// Refuses a snapshot of another session than this tracker's.
    fn check_session(&self, snapshot: &Snapshot) -> Result<(), OtherSession> {
        match (&self.session, snapshot.session_id()) {
            (Some(mine), Some(theirs)) if mine != theirs => Err(OtherSession::new(mine, theirs)),
            _ => Ok(()),
        }
    }

    /// Learns the session from confirmed evidence that names it.
    fn learn_session(&mut self, snapshot: &Snapshot) {
        if self.session.is_none() {
            self.session = snapshot.session_id().cloned();
        }
    }

    /// The settled session, once this one settled: a confirmed final status, or expiry. Every
    /// action it warrants has been asked for then, and a [`Settled`] (about 64 bytes) answers
    /// whatever reappears without asking anything twice.
    #[must_use]
    pub fn settled(&self) -> Option<Settled> {
        let best = self.best.as_ref()?;
        (best.status().is_final() || self.expired).then(|| {
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
    pub(crate) fn revived(config: TrackerConfig, session: Option<SessionId>, c: Carried) -> Self {
        Self {
            session,
            best: c.best,
            claim: c.claim,
            expired: c.expired,
            conflicted: c.conflicted,
            asked: c.asked,
            released: c.released,
            expiry: c.expiry,
            ..Self::new(config)
        }
    }

    /// The tracker these stored parts describe: the one place a tracker is made other than by
    /// observing.
    ///
    /// # Errors
    /// Why the parts do not fit together: a confirmed state, an expiry or an action without
    /// confirmed evidence, a release reason without a release asked (or the reverse).
    #[cfg(feature = "serde")]
    pub(crate) fn restore(parts: Parts) -> Result<Self, &'static str> {
        let Parts {
            session,
            config,
            best,
            claim,
            expired,
            conflicted,
            asked,
            released,
            changed_at,
            urgent_since,
            last_read,
            retry,
            events,
            expiry,
        } = parts;
        // Everything but the read a claim asks for comes from confirmed evidence.
        let from_evidence = asked.without(ActionSet::EMPTY.with(ActionKind::ReadSession));
        let unclaimed = claim.is_none() && !asked.is_empty();
        if best.is_none() && (expired || !from_evidence.is_empty() || unclaimed) {
            return Err("a tracker without confirmed evidence has no confirmed state");
        }
        if asked.contains(ActionKind::Release) != released.is_some() {
            return Err("`released` must be set exactly when a release was asked");
        }
        let expiry = expiry.or_else(|| best.as_ref().and_then(Expiry::of));
        if expiry.is_some() && best.is_none() {
            return Err("an expiry comes from confirmed evidence, and there is none");
        }
        let mut remembered = heapless::Deque::new();
        for e in events {
            remembered
                .push_back(e)
                .map_err(|_| "too many remembered events")?;
        }
        Ok(Self {
            config,
            session,
            best: best.as_ref().map(Snapshot::without_session),
            claim,
            expired,
            conflicted,
            asked,
            released,
            changed_at,
            urgent_since,
            last_read,
            retry,
            events: remembered,
            expiry,
        })
    }

    /// The tracker's parts, for persistence.
    #[cfg(feature = "serde")]
    pub(crate) fn parts(&self) -> Parts {
        let mut events = heapless::Vec::new();
        for &e in &self.events {
            // Cannot fail: both hold `REMEMBERED_EVENTS`.
            let _ = events.push(e);
        }
        Parts {
            session: self.session.clone(),
            config: self.config,
            best: self.best.clone(),
            claim: self.claim,
            expired: self.expired,
            conflicted: self.conflicted,
            asked: self.asked,
            released: self.released,
            changed_at: self.changed_at,
            urgent_since: self.urgent_since,
            last_read: self.last_read,
            retry: self.retry,
            events,
            expiry: self.expiry,
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
            updated_at: self.best.as_ref().and_then(Snapshot::updated_at),
            completion: self.best.as_ref().and_then(Snapshot::completion),
            expires_at: self.expiry.map(|e| e.at),
            expired: self.expired,
            claim: self.claim(),
        }
    }

    /// The confirmed snapshot of highest precedence, if any.
    #[must_use]
    pub const fn snapshot(&self) -> Option<&Snapshot> {
        self.best.as_ref()
    }

    /// The confirmed status.
    #[must_use]
    pub fn status(&self) -> Option<Status> {
        self.best.as_ref().map(Snapshot::status)
    }

    /// The newer status change unsigned callbacks claim, while it outranks the confirmed status
    /// and could follow it in one history: show it as awaiting confirmation, read soon, act on
    /// nothing in it.
    #[must_use]
    pub fn claim(&self) -> Option<Claim> {
        match self.claim_standing() {
            Standing::Open(claim) => Some(claim),
            Standing::None | Standing::Contradicted => None,
        }
    }

    /// Where the recorded claim stands against the confirmed state.
    fn claim_standing(&self) -> Standing {
        let Some(claim) = self.claim else {
            return Standing::None;
        };
        let Some(best) = &self.best else {
            return Standing::Open(claim);
        };
        if claim.key() <= change_key(best.status(), sort_time(best)) {
            return Standing::None;
        }
        let pair = Pair {
            earlier: (best.status(), best.updated_at()),
            later: (claim.status(), Some(claim.updated_at())),
        };
        match contradiction(pair) {
            None => Standing::Open(claim),
            Some(_) => Standing::Contradicted,
        }
    }

    /// Whether authenticated evidence (a read, or a verified callback) has shown the session:
    /// [`Tracker::status`] and every action come from it. Unsigned callbacks never change it.
    #[must_use]
    pub const fn is_confirmed(&self) -> bool {
        self.best.is_some()
    }

    /// Whether the session expired.
    #[must_use]
    pub const fn is_expired(&self) -> bool {
        self.expired
    }

    /// Whether observations contradicted each other, or a session got both a release and a
    /// money action: a person should look at this session. Stays set.
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
        event_id: Option<&str>,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<Report<'_>, Refused> {
        self.check_session(snapshot)
            .map_err(Refused::OtherSession)?;
        refuse_future(snapshot.updated_at(), now, self.config.max_clock_skew)?;
        let was_conflicted = self.conflicted;
        let outcome = self.weigh_hint(snapshot, now);
        Ok(self.settle(event_id.map(event_hash), outcome, was_conflicted, None))
    }

    /// Observes a status callback whose per-session secret matched ([`SecretMatched`], from
    /// [`crate::callback_secret_matches`]): evidence, like a read. It binds the tracker to the
    /// session it names, as a read does.
    ///
    /// # Errors
    /// [`Refused::OtherSession`] for a snapshot of another session than the tracker's: nothing
    /// changes.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "taken by value on purpose: one matched secret proves one callback"
    )]
    pub fn observe_verified_callback(
        &mut self,
        checked: SecretMatched,
        event_id: Option<&str>,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<Report<'_>, Refused> {
        let SecretMatched { .. } = checked;
        self.check_session(snapshot)
            .map_err(Refused::OtherSession)?;
        self.learn_session(snapshot);
        let was_conflicted = self.conflicted;
        let outcome = self.reconcile(snapshot, now);
        Ok(self.settle(event_id.map(event_hash), outcome, was_conflicted, None))
    }

    /// Observes the snapshot a read of the session returned at `now`. The first that names its
    /// session binds the tracker to it (unless [`Tracker::for_session`] did). A read is a read
    /// even when it changes nothing: the schedule counts from it ([`Tracker::next_read`]). The
    /// read that finds the session past [`TrackerConfig::abandon_after`] asks for
    /// [`Action::Disable`].
    ///
    /// # Errors
    /// [`Refused::OtherSession`] for a snapshot of another session than the tracker's: nothing
    /// changes.
    pub fn observe_read(
        &mut self,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<Report<'_>, Refused> {
        self.check_session(snapshot)
            .map_err(Refused::OtherSession)?;
        self.learn_session(snapshot);
        self.read_at(now);
        let was_conflicted = self.conflicted;
        let outcome = self.reconcile(snapshot, now);
        Ok(self.settle(None, outcome, was_conflicted, Some(now)))
    }

    /// Records a read made at `now` that answered (200, or a 404 taken as expiry).
    fn read_at(&mut self, now: Timestamp) {
        self.last_read = Some(self.last_read.map_or(now, |r| r.max(now)));
        self.retry = None;
        if self.urgent_since.is_some_and(|u| u <= now) {
            self.urgent_since = None;
        }
    }

    /// Observes a read of the session that failed at `now` ([`ReadFailure`]): it says nothing
    /// about the session, and the next read backs off (1 s, 2 s, 4 s, … up to
    /// [`MAX_READ_BACKOFF`](crate::MAX_READ_BACKOFF), less a spread of up to half drawn from
    /// the session id, and never before a 429's `X-Ratelimit-Reset`). The read keeps its
    /// urgency; once reads answer again, the schedule goes on as if the failures had not been.
    /// Returns the next read.
    pub fn observe_read_failure(
        &mut self,
        failure: ReadFailure,
        now: Timestamp,
    ) -> Option<NextRead> {
        let failures = self.retry.map_or(1, |r| r.failures.saturating_add(1));
        let jitter = self.spread() ^ u32::from(failures).wrapping_mul(0x9E37_79B9);
        self.retry = Some(Retry {
            at: now.saturating_add(backoff(failures, failure, jitter)),
            failures,
        });
        self.next_read(now)
    }

    /// Observes the consumer's browser arriving at one of the merchant's redirect URLs for
    /// `session_id` (the `{{session_id}}` Klarna substitutes) at `now`. Anyone can open that
    /// URL, so it is a hint like an unsigned callback, and less: it decides nothing and claims
    /// nothing. A redirect that suggests a final status (`success`, `cancel`) makes a read due
    /// at once ([`Urgency::Confirm`], at most one every [`ReadPolicy::hint_gap`]); `failure`,
    /// `back` and `error` suggest a status the consumer may retry from, and ask for nothing
    /// (like a callback claiming such a status). Ignore any `{{authorization_token}}` in the
    /// URL: the read brings the token when it is real.
    ///
    /// # Errors
    /// [`Refused::OtherSession`] when `session_id` is not the tracker's session: nothing
    /// changes.
    pub fn observe_redirect(
        &mut self,
        session_id: &SessionId,
        redirect: Redirect,
        now: Timestamp,
    ) -> Result<Report<'_>, Refused> {
        if let Some(mine) = &self.session {
            if mine != session_id {
                return Err(Refused::OtherSession(OtherSession::new(mine, session_id)));
            }
        }
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
        Ok(self.report(outcome, ActionSet::EMPTY))
    }

    /// Observes a read that answered 404 (not found) at `now`.
    ///
    /// # Errors
    /// [`NotFoundError`] when the confirmed `expires_at` is unknown or later than `now`: then
    /// the 404 means a wrong id or wrong credentials, not expiry, and nothing changes. (An
    /// unsigned callback's `expires_at` never counts.)
    pub fn observe_not_found(&mut self, now: Timestamp) -> Result<Report<'_>, NotFoundError> {
        if self.expired {
            return Ok(self.report(Outcome::Duplicate, ActionSet::EMPTY));
        }
        let expires_at = self.expiry.map(|e| e.at);
        match expires_at {
            Some(at) if now >= at => {
                self.read_at(now);
                self.expired = true;
                self.changed_at = Some(now);
                let new = self.ask(None);
                Ok(self.report(Outcome::Expired, new))
            }
            _ => Err(NotFoundError { now, expires_at }),
        }
    }

    /// The next read of the session, or `None` when no read is needed any more (a confirmed
    /// final status, or expiry): when it falls due, and how urgent it is. [`NextRead::at`] may be
    /// before `now`: a read that fell due and was not made stays due ("due since"), so a poller
    /// that wakes on any tick and reads each session whose read [`is_due`](NextRead::is_due)
    /// misses nothing, and one that reads when due never reads twice for one slot. `now` matters
    /// only before the first read of a tracker not made by [`Tracker::created`]: then a read is
    /// due at `now` ([`Urgency::Initial`]).
    ///
    /// The schedule ([`ReadPolicy`]): blind reads anchored on the last confirmed change and
    /// counted from the last read, never more than [`ReadPolicy::blind_gap`] apart; a read at
    /// `expires_at` and at the [`abandon_after`](TrackerConfig::abandon_after) deadline; a
    /// read at once (spaced by [`ReadPolicy::hint_gap`]) for a final status a callback claims, a
    /// redirect, or a disable just asked; no read before the back-off after failed reads ends.
    /// Unsigned input can only bring a read forward, never put one off.
    #[must_use]
    pub fn next_read(&self, now: Timestamp) -> Option<NextRead> {
        if self.expired {
            return None;
        }
        let policy = &self.config.reads;
        let (mut at, mut urgency) = match &self.best {
            // Created ([`Tracker::created`]): the first read is due like a blind one.
            None => match self.changed_at {
                Some(created) => (
                    policy.blind_due(created, self.last_read, self.spread()),
                    Urgency::Initial,
                ),
                None => (now, Urgency::Initial),
            },
            Some(best) if best.status().is_final() => return None,
            Some(_) => {
                let anchor = self.changed_at.or(self.last_read).unwrap_or(now);
                let mut at = policy.blind_due(anchor, self.last_read, self.spread());
                let before_last = |slot: Timestamp| self.last_read.is_none_or(|r| r < slot);
                // Never within `MIN_READ_INTERVAL` of the last read, like every other slot.
                let spaced = |slot: Timestamp| {
                    self.last_read
                        .map_or(slot, |r| slot.max(r.saturating_add(MIN_READ_INTERVAL)))
                };
                if let Some(expiry) = self.expiry.filter(|e| before_last(e.at)) {
                    at = at.min(spaced(expiry.at));
                }
                if let Some(deadline) = self.abandon_deadline().filter(|&d| before_last(d)) {
                    at = at.min(spaced(deadline));
                }
                (at, Urgency::Blind)
            }
        };
        if let Some(since) = self.urgent_since {
            let spaced = self
                .last_read
                .map_or(since, |r| r.saturating_add(policy.hint_gap()).max(since));
            at = at.min(spaced);
            urgency = Urgency::Confirm;
        }
        if let Some(retry) = self.retry {
            at = at.max(retry.at);
        }
        Some(NextRead { at, urgency })
    }

    /// This session's spread of reads and retries, drawn from its id (0 before it is known).
    fn spread(&self) -> u32 {
        self.session
            .as_ref()
            .map_or(0, |id| event_hash(id.as_str()))
    }

    /// When the session counts as abandoned ([`TrackerConfig::abandon_after`] after its last
    /// confirmed change), while a disable is still to be asked for.
    fn abandon_deadline(&self) -> Option<Timestamp> {
        let after = self.config.abandon_after?;
        let best = self.best.as_ref()?;
        if best.status().is_final() || self.expired || self.asked.contains(ActionKind::Disable) {
            return None;
        }
        let life = best.updated_at().or(self.changed_at)?;
        Some(life.saturating_add(after))
    }

    /// Remembers a callback that changed the tracker, asks for what is now warranted, and
    /// reports.
    /// `read_at` is the time of the read that made the observation, if a read did.
    fn settle(
        &mut self,
        event: Option<u32>,
        outcome: Outcome,
        was_conflicted: bool,
        read_at: Option<Timestamp>,
    ) -> Report<'_> {
        if !outcome.changed() {
            let seen = event.is_some_and(|h| self.events.iter().any(|&e| e == h));
            let outcome = if seen { Outcome::Duplicate } else { outcome };
            // Nothing changed, but a read may find the session abandoned.
            let new = match read_at {
                Some(_) => self.ask(read_at),
                None => ActionSet::EMPTY,
            };
            return self.report(outcome, new);
        }
        if let Some(h) = event {
            if self.events.is_full() {
                self.events.pop_front();
            }
            // Cannot fail: there is room now.
            let _ = self.events.push_back(h);
        }
        let new = self.ask(read_at);
        // The observation that reveals a conflict says so itself, not only the sticky flag.
        let outcome = match outcome {
            Outcome::Advanced { from, to, .. } if self.conflicted && !was_conflicted => {
                Outcome::Contradicts { from, to }
            }
            Outcome::Confirmed(to) if self.conflicted && !was_conflicted => {
                Outcome::Contradicts { from: None, to }
            }
            outcome => outcome,
        };
        self.report(outcome, new)
    }

    /// Folds confirmed evidence `s` into the best snapshot (and its `expires_at` into the known
    /// expiry); says what it did.
    fn reconcile(&mut self, s: &Snapshot, now: Timestamp) -> Outcome {
        let expiry = Expiry::of(s).filter(|e| self.expiry.is_none_or(|k| e.rank() > k.rank()));
        let outcome = self.reconcile_best(s, now);
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

    /// Folds confirmed evidence `s` into the best snapshot; says what it did.
    fn reconcile_best(&mut self, s: &Snapshot, now: Timestamp) -> Outcome {
        let from = match &self.best {
            None => None,
            Some(best) => {
                let (known, observed) = (best.status(), s.status());
                let outranks = precedence(s).cmp(&precedence(best)) == Ordering::Greater;
                if !outranks {
                    // The same change (perhaps with an older `expires_at`), older news, or a
                    // contradiction.
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
                    self.best = Some(s.without_session());
                    self.changed_at = Some(now);
                    return self.conflict(known, observed, kind);
                }
                // A newer `expires_at` of the same change skips nothing.
                Some((known, s.same_change(best)))
            }
        };
        let skipped = from.is_some_and(|(f, same)| !same && !table::has_edge(f, s.status()));
        let from = from.map(|(f, _)| f);
        let claimed = self.claim.is_some() && self.claim == dated_claim(s);
        self.best = Some(s.without_session());
        self.changed_at = Some(now);
        if matches!(self.claim_standing(), Standing::Contradicted) {
            // Authenticated evidence shows the claim could not have happened: a forged
            // callback, most likely. Nothing was acted on; a person should know.
            self.conflicted = true;
        }
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

    /// Weighs hint `s` against the confirmed state and the claim; says what it did.
    fn weigh_hint(&mut self, s: &Snapshot, now: Timestamp) -> Outcome {
        // An undated hint (a `COMPLETED` body without a readable `updated_at`) claims its change
        // when it arrived: it happened no later.
        let claim = dated_claim(s).unwrap_or(Claim::new(s.status(), now));
        let mut conflict = None;
        if let Some(best) = &self.best {
            let (known, observed) = (best.status(), s.status());
            // The change confirmed already (an undated hint is stamped on arrival, later than
            // the change it repeats).
            if s.same_change(best) {
                return Outcome::Duplicate;
            }
            if claim.key() <= change_key(known, sort_time(best)) {
                // Confirmed evidence outranks it: it can only be old news, or a contradiction.
                return match snapshots_contradict(s, best) {
                    Some(kind) => self.conflict(known, observed, kind),
                    None => Outcome::Stale,
                };
            }
            conflict = snapshots_contradict(best, s).map(|kind| (known, observed, kind));
        }
        let rises = self.claim.is_none_or(|c| claim.key() > c.key());
        if rises {
            self.claim = Some(claim);
            if claim.status().is_final() && self.urgent_since.is_none() {
                self.urgent_since = Some(now);
            }
        }
        match conflict {
            Some((known, observed, kind)) => self.conflict(known, observed, kind),
            None if rises => Outcome::Claimed(claim.status()),
            None if self.claim == Some(claim) => Outcome::Duplicate,
            None => Outcome::Stale,
        }
    }

    /// Remembers that observations contradicted each other.
    fn conflict(&mut self, known: Status, observed: Status, kind: ConflictKind) -> Outcome {
        self.conflicted = true;
        Outcome::Conflict {
            known,
            observed,
            kind,
        }
    }

    /// Asks for what the confirmed state warrants and has not been asked for; returns the new
    /// kinds. `read_at` is the time of a read that just answered: only a read finds a session
    /// abandoned.
    fn ask(&mut self, read_at: Option<Timestamp>) -> ActionSet {
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
        if !self.expired && self.claim().is_some_and(|c| c.status().is_final()) {
            due = due.with(ActionKind::ReadSession);
        }
        let abandoned = self
            .abandon_deadline()
            .zip(read_at)
            .filter(|&(deadline, now)| now >= deadline);
        if let Some((_, now)) = abandoned {
            due = due.with(ActionKind::Disable);
            // Read again once the merchant has disabled it: that read decides.
            self.urgent_since = Some(now);
        }
        let new = due.without(self.asked);
        self.asked = self.asked.union(new);
        // Money and a release for one session: only contradictory evidence gets here (a cancel
        // then an authorization, or an authorization read after the session expired).
        let money = self.asked.iter().any(ActionKind::is_money);
        if money && self.asked.contains(ActionKind::Release) {
            self.conflicted = true;
        }
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
    fn action(&self, kind: ActionKind) -> Option<Action> {
        let best = self.best.as_ref();
        let completion = best.and_then(Snapshot::completion);
        Some(match (kind, completion) {
            (
                ActionKind::PlaceOrder,
                Some(Completion::Authorized {
                    authorization_token,
                }),
            ) => Action::PlaceOrder {
                authorization_token: authorization_token.clone(),
                place_by: best?
                    .updated_at()
                    .map(|at| at.saturating_add(AUTHORIZATION_VALIDITY)),
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
            (ActionKind::ReadSession, _) => Action::ReadSession,
            (ActionKind::Disable, _) => Action::Disable,
            _ => return None,
        })
    }
}

/// Where the recorded claim stands against the confirmed state.
enum Standing {
    /// No claim, or confirmed evidence outranks it.
    None,
    /// It outranks the confirmed state and could follow it: awaiting confirmation.
    Open(Claim),
    /// It outranks the confirmed state but cannot follow it.
    Contradicted,
}

/// The claim a dated snapshot makes; `None` for an undated one.
fn dated_claim(s: &Snapshot) -> Option<Claim> {
    Some(Claim::new(s.status(), s.updated_at()?))
}

fn event_hash(event_id: &str) -> u32 {
    let mut h = hash32::FnvHasher::default();
    h.write(event_id.as_bytes());
    hash32::Hasher::finish32(&h)
}

/// What one observation did, and the actions it newly asks for (each at most once per session,
/// listed in [`ActionKind`] order). Borrows the tracker.
///
/// Must be used: the actions it carries are marked as asked the moment it is made and are never
/// asked again, so a report dropped unread (`tracker.observe_read(..);`) loses them.
#[derive(Clone, Copy, Debug)]
#[must_use = "the report carries the actions the merchant must perform; they are never asked again"]
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

    /// The actions newly asked for, with their data (owned: store them with the tracker).
    pub fn actions(&self) -> impl Iterator<Item = Action> + use<'t> {
        let tracker = self.tracker;
        self.new.iter().filter_map(move |k| tracker.action(k))
    }

    /// The tracker's state after the observation.
    #[must_use]
    pub fn state(&self) -> State<'t> {
        self.tracker.state()
    }

    /// The next read, after the observation ([`Tracker::next_read`]).
    #[must_use]
    pub fn next_read(&self, now: Timestamp) -> Option<NextRead> {
        self.tracker.next_read(now)
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
