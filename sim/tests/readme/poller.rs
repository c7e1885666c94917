use core::cmp::Reverse;
use core::time::Duration;
use std::collections::BTreeSet;

use hpp_session::{
    DEFAULT_DETECT_WITHIN, MAX_DETECT_WITHIN, NextRead, PolicyError, ReadFailure, ReadPolicy,
    SessionId, Snapshot, Timestamp, Tracker, TrackerConfig, Urgency,
};

/// The policy for a poller that wakes every `tick` and spreads that tick's reads over it (at
/// the budget's pace): a due read waits at most two ticks. The default guarantee (45 minutes)
/// when those two ticks leave room for it, else the longest one they leave: a blind read every
/// 43 minutes on a 1-minute tick, 25 on a 5-minute one, 7 on an 8-minute one; from 9 min 10 s
/// on nothing is left, and the `PolicyError` says so.
pub fn policy_for(tick: Duration) -> Result<TrackerConfig, PolicyError> {
    let lag = tick * 2;
    let detect = DEFAULT_DETECT_WITHIN.min(MAX_DETECT_WITHIN.saturating_sub(lag * 2));
    let reads = ReadPolicy::DEFAULT
        .with_detect_within(detect)?
        .with_poll_lag(lag)?;
    Ok(TrackerConfig {
        reads,
        ..TrackerConfig::DEFAULT
    })
}

/// The reads' share of Klarna's budget a second: e.g. 40 of the playground's 50 (the rest
/// stays for placing orders).
pub const READS_PER_SECOND: u32 = 40;

/// What Klarna answered to a read of `session_url` (your HTTP client makes it).
pub enum Answer {
    /// 200: the session.
    Session(Box<Snapshot>),
    /// 404.
    NotFound,
    /// 429 (with `X-Ratelimit-Reset`), 5xx, a timeout, a body that does not parse.
    Failed(ReadFailure),
}

/// Your open sessions and when each wants a read. In a database: a row per session with the
/// stored tracker, its `next_read` and urgency in columns, and an index on them.
#[derive(Default)]
pub struct Sessions {
    trackers: Vec<(SessionId, Tracker)>,
    next: Vec<Option<NextRead>>,
    /// (when the read falls due, row): the index a due read is found by.
    due: BTreeSet<(Timestamp, usize)>,
}

impl Sessions {
    /// Stores the tracker of row `row` (new, or changed by a callback, a read or an action
    /// done), with when it wants a read.
    pub fn store(
        &mut self,
        row: usize,
        id: SessionId,
        tracker: Tracker,
        config: &TrackerConfig,
        now: Timestamp,
    ) {
        if let Some(Some(old)) = self.next.get(row) {
            self.due.remove(&(old.at, row));
        }
        let next = tracker.next_read(config, now);
        if let Some(n) = next {
            self.due.insert((n.at, row));
        }
        if row >= self.trackers.len() {
            self.trackers
                .resize_with(row + 1, || (id.clone(), Tracker::new()));
            self.next.resize(row + 1, None);
        }
        self.trackers[row] = (id, tracker);
        self.next[row] = next;
    }

    /// The tracker of row `row`, to observe a callback or redirect on, or to drain what it owes.
    pub fn load(&self, row: usize) -> (SessionId, Tracker) {
        self.trackers[row].clone()
    }

    /// One tick of `tick` at `now`: reads the sessions whose read is due, most urgent first,
    /// as many as the tick's share of the budget allows, paced at `READS_PER_SECOND` (read `i`
    /// at `now + i / READS_PER_SECOND`: wait until then, or let a rate limiter wait), and
    /// reports every answer. Returns the rows read and when: drain what each owes.
    pub fn tick(
        &mut self,
        config: &TrackerConfig,
        now: Timestamp,
        tick: Duration,
        mut read: impl FnMut(&SessionId, Timestamp) -> Answer,
    ) -> Vec<(usize, Timestamp)> {
        let pace = Duration::from_secs(1) / READS_PER_SECOND;
        let share = usize::try_from(tick.as_nanos() / pace.as_nanos()).unwrap_or(usize::MAX);
        // Every read due by now, most urgent first, then the longest due; this tick's share.
        let mut due: Vec<(Reverse<Urgency>, Timestamp, usize)> = self
            .due
            .range(..=(now, usize::MAX))
            .filter_map(|&(at, row)| Some((Reverse(self.next[row]?.urgency), at, row)))
            .collect();
        due.sort_unstable();
        let mut done = Vec::new();
        for (i, (_, _, row)) in due.into_iter().take(share.max(1)).enumerate() {
            let at = now.saturating_add(pace * u32::try_from(i).unwrap_or(u32::MAX));
            let (id, mut tracker) = self.load(row);
            // Handed out. In a database: store it and commit here, then read, so that no
            // transaction waits on Klarna. A read never reported counts as failed after
            // `READ_TIMEOUT`: a poller that drops an answer reads again about once a minute,
            // not every tick.
            if tracker.start_read(config, at).is_none() {
                continue;
            }
            match read(&id, at) {
                Answer::Session(snapshot) => {
                    if tracker.observe_read(config, &snapshot, at).is_err() {
                        // Another session's snapshot: a mixed-up id, never observed.
                        tracker.observe_read_failure(ReadFailure::Unexpected, at);
                    }
                }
                Answer::NotFound => {
                    if tracker.observe_not_found(at).is_err() {
                        // Not found before it expires: a wrong id or credentials.
                        tracker.observe_read_failure(ReadFailure::Unexpected, at);
                    }
                }
                Answer::Failed(failure) => tracker.observe_read_failure(failure, at),
            }
            self.store(row, id, tracker, config, at);
            done.push((row, at));
        }
        done
    }
}
