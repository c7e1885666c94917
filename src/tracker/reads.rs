//! When a tracker wants its session read: the blind schedule and its guarantee, the slots of
//! expiry and the merchant's time limit, reads a hint makes urgent, reads in flight and the
//! back-off after failed ones.

use super::{Tracker, TrackerConfig};
use crate::action::ActionKind;
use crate::schedule::{MIN_READ_INTERVAL, NextRead, READ_TIMEOUT, ReadFailure, Urgency, backoff};
use crate::timestamp::Timestamp;

impl Tracker {
    /// The next read of the session, or `None` when no read is needed any more (a confirmed
    /// final status, or expiry): when it falls due, and how urgent it is. [`NextRead::at`] may be
    /// before `now`: a read that fell due and was not made stays due ("due since"), so a poller
    /// that wakes on any tick misses nothing. Take the read with [`Tracker::start_read`] (it
    /// hands out the due read once and counts it in flight) and report its answer: a poller
    /// that reads whatever `next_read` says is due and drops an answer reads that session on
    /// every tick. `now` matters only before the first read of a tracker not made by
    /// [`Tracker::created`]: then a read is due at once ([`Urgency::Initial`]).
    ///
    /// The schedule ([`crate::ReadPolicy`]):
    /// - the blind read, no later than the last read plus [`crate::ReadPolicy::blind_gap`]
    ///   whatever arrived since and whenever (the guarantee; for a tracker made by
    ///   [`Tracker::created`], the creation counts as the first read), sooner after a change
    ///   while `first` is under the gap;
    /// - a read at `expires_at`, and at the
    ///   [`abandon_after`](TrackerConfig::abandon_after) deadline;
    /// - a read at once (spaced by [`crate::ReadPolicy::hint_gap`]) for a final status a
    ///   callback claims, a redirect, or a disable just asked or refused;
    /// - none before the back-off after failed reads ends, and none while a read started with
    ///   [`Tracker::start_read`] is in flight (until it counts as failed, after
    ///   [`READ_TIMEOUT`], and its back-off ends).
    ///
    /// Unsigned input can only bring a read forward, never put one off.
    #[must_use]
    pub fn next_read(&self, config: &TrackerConfig, now: Timestamp) -> Option<NextRead> {
        if self.expired || self.status().is_some_and(crate::Status::is_final) {
            return None;
        }
        let policy = &config.reads;
        let (mut at, mut urgency) = match self.last_read {
            // Never read, and not made from the create call: a read at once, due since the
            // first evidence when there is some.
            None => (
                self.changed_at.map_or(now, |c| c.min(now)),
                Urgency::Initial,
            ),
            Some(read) => {
                let anchor = self.changed_at.unwrap_or(read);
                let mut at = policy.blind_due(anchor, read, self.spread());
                // Never within `MIN_READ_INTERVAL` of the last read, like every other slot.
                let spaced = |slot: Timestamp| slot.max(read.saturating_add(MIN_READ_INTERVAL));
                if let Some(expiry) = self.expiry.filter(|e| read < e.at) {
                    at = at.min(spaced(expiry.at));
                }
                if let Some(deadline) = self.abandon_deadline(config).filter(|&d| read < d) {
                    at = at.min(spaced(deadline));
                }
                let urgency = if self.best.is_some() {
                    Urgency::Blind
                } else {
                    Urgency::Initial
                };
                (at, urgency)
            }
        };
        if let Some(since) = self.urgent_since {
            let spaced = self
                .last_read
                .map_or(since, |r| r.saturating_add(policy.hint_gap()).max(since));
            at = at.min(spaced);
            urgency = Urgency::Confirm;
        }
        if let Some(retry_at) = self.retry_at {
            at = at.max(retry_at);
        }
        if let Some(started) = self.reading_since {
            // The read in flight is the one that is due; the next only once it timed out and
            // backed off like any failed read.
            let (_, after) = self.next_failure(ReadFailure::Timeout);
            at = at.max(started.saturating_add(READ_TIMEOUT).saturating_add(after));
        }
        Some(NextRead { at, urgency })
    }

    /// Starts the read that is due at `now`, if one is: the tracker counts it as in flight, so
    /// that asking again does not hand out a second read for the same slot, and returns it
    /// (when it fell due, how urgent it is). Store the tracker, read the session, and report
    /// the answer ([`Tracker::observe_read`], [`Tracker::observe_not_found`],
    /// [`Tracker::observe_read_failure`]). A read never answered counts as failed after
    /// [`READ_TIMEOUT`], and the tracker backs off: a poller that never reports answers reads
    /// a session about once a minute at most, not on every tick. `None` when no read is due.
    pub fn start_read(&mut self, config: &TrackerConfig, now: Timestamp) -> Option<NextRead> {
        let next = self.next_read(config, now).filter(|r| r.is_due(now))?;
        if let Some(started) = self.reading_since.take() {
            // The read before it was never answered: it timed out.
            let timed_out = started.saturating_add(READ_TIMEOUT).min(now);
            self.fail(ReadFailure::Timeout, timed_out);
        }
        self.reading_since = Some(now);
        Some(next)
    }

    /// Whether a read started with [`Tracker::start_read`] is waiting for its answer, and since
    /// when.
    #[must_use]
    pub const fn read_in_flight(&self) -> Option<Timestamp> {
        self.reading_since
    }

    /// Records a read answered at `now` (a 200, or a 404 taken as expiry); returns when it
    /// counts from: its start, when the caller started it with [`Tracker::start_read`].
    pub(super) fn answered(&mut self, now: Timestamp) -> Timestamp {
        let at = self.reading_since.take().map_or(now, |s| s.min(now));
        self.last_read = Some(self.last_read.map_or(at, |r| r.max(at)));
        self.retry_at = None;
        self.failures = 0;
        // A hint that came while the read was in flight may be news the read did not see.
        if self.urgent_since.is_some_and(|u| u <= at) {
            self.urgent_since = None;
        }
        at
    }

    /// Records a failed read at `at`: the next waits for the back-off.
    pub(super) fn fail(&mut self, failure: ReadFailure, at: Timestamp) {
        let (failures, after) = self.next_failure(failure);
        self.retry_at = Some(at.saturating_add(after));
        self.failures = failures;
    }

    /// How many failures in a row one more would make, and the back-off after it.
    fn next_failure(&self, failure: ReadFailure) -> (u8, core::time::Duration) {
        let failures = self.failures.saturating_add(1);
        let jitter = self.spread() ^ u32::from(failures).wrapping_mul(0x9E37_79B9);
        (failures, backoff(failures, failure, jitter))
    }

    /// This session's spread of reads and retries, drawn from its id (0 before it is known).
    fn spread(&self) -> u32 {
        self.session
            .as_ref()
            .map_or(0, |id| super::event_hash(id.as_str()))
    }

    /// When the session counts as abandoned ([`TrackerConfig::abandon_after`] after its last
    /// confirmed sign of life), while a disable is still to be asked for. The sign of life is
    /// the confirmed change's `updated_at`, never later than when it was learned (a body stamped
    /// in the future must not put the time limit off); before any evidence, the creation.
    pub(super) fn abandon_deadline(&self, config: &TrackerConfig) -> Option<Timestamp> {
        let after = config.abandon_after?;
        if self.expired || self.asked.contains(ActionKind::Disable) {
            return None;
        }
        let life = match &self.best {
            Some(best) if best.status().is_final() => return None,
            Some(best) => match (best.updated_at(), self.changed_at) {
                (Some(stamped), Some(learned)) => stamped.min(learned),
                (stamped, learned) => stamped.or(learned)?,
            },
            None => self.last_read?,
        };
        Some(life.saturating_add(after))
    }
}
