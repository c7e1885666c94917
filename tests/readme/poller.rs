use core::cmp::Reverse;
use core::time::Duration;
use std::collections::BTreeSet;

use hpp_session::{
    DEFAULT_DETECT_WITHIN, MAX_DETECT_WITHIN, NextRead, PolicyError, ReadFailure, ReadPolicy,
    SessionId, Snapshot, Timestamp, Tracker, TrackerConfig, Urgency,
};

/// The policy for a poller that wakes every `tick` and spreads that tick's reads over it (at
/// the budget's pace): a due read waits at most two ticks. The default guarantee (45 minutes)
/// when those two ticks leave room for it, else the longest one they leave.
pub fn policy_for(tick: Duration) -> Result<TrackerConfig, PolicyError> {
    let lag = tick * 2;
    let detect = DEFAULT_DETECT_WITHIN.min(MAX_DETECT_WITHIN.saturating_sub(lag * 2));
    let reads = ReadPolicy::DEFAULT
        .with_detect_within(detect)?
        .with_poll_lag(lag)?;
    Ok(TrackerConfig { reads, ..TrackerConfig::DEFAULT })
}

/// How many reads one tick may make: the reads' share of Klarna's budget (e.g. 40 of the
/// playground's 50 a second; the rest stays for placing orders) times the tick's seconds.
pub fn reads_per_tick(reads_per_second: u32, tick: Duration) -> usize {
    let per_tick = u128::from(reads_per_second) * tick.as_millis() / 1_000;
    usize::try_from(per_tick.max(1)).unwrap_or(usize::MAX)
}

/// What Klarna answered to a read of `session_url` (your HTTP client makes it).
pub enum Answer {
    /// 200: the session.
    Session(Snapshot),
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
    pub fn store(&mut self, row: usize, id: SessionId, tracker: Tracker, config: &TrackerConfig, now: Timestamp) {
        if let Some(Some(old)) = self.next.get(row) {
            self.due.remove(&(old.at, row));
        }
        let next = tracker.next_read(config, now);
        if let Some(n) = next {
            self.due.insert((n.at, row));
        }
        if row >= self.trackers.len() {
            self.trackers.resize_with(row + 1, || (id.clone(), Tracker::new()));
            self.next.resize(row + 1, None);
        }
        self.trackers[row] = (id, tracker);
        self.next[row] = next;
    }

    /// The tracker of row `row`, to observe a callback or redirect on, or to drain what it owes.
    pub fn load(&self, row: usize) -> (SessionId, Tracker) {
        self.trackers[row].clone()
    }

    /// One tick at `now`: reads the sessions whose read is due, most urgent first, at most
    /// `reads` of them, and reports every answer. Returns the rows read: drain what each owes.
    pub fn tick(
        &mut self,
        config: &TrackerConfig,
        now: Timestamp,
        reads: usize,
        mut read: impl FnMut(&SessionId) -> Answer,
    ) -> Vec<usize> {
        // Every read due by now, most urgent first, then the longest due; this tick's share.
        let mut due: Vec<(Reverse<Urgency>, Timestamp, usize)> = self
            .due
            .range(..=(now, usize::MAX))
            .filter_map(|&(at, row)| Some((Reverse(self.next[row]?.urgency), at, row)))
            .collect();
        due.sort_unstable();
        let due: Vec<usize> = due.into_iter().take(reads).map(|(_, _, row)| row).collect();
        for &row in &due {
            let (id, mut tracker) = self.load(row);
            // Handed out. In a database: store it and commit here, then read, so that no
            // transaction waits on Klarna. A read never reported counts as failed after
            // `READ_TIMEOUT`: a poller that drops an answer reads again about once a minute,
            // not every tick.
            if tracker.start_read(config, now).is_none() {
                continue;
            }
            match read(&id) {
                Answer::Session(snapshot) => {
                    if tracker.observe_read(config, &snapshot, now).is_err() {
                        // Another session's snapshot: a mixed-up id, never observed.
                        tracker.observe_read_failure(ReadFailure::Unexpected, now);
                    }
                }
                Answer::NotFound => {
                    if tracker.observe_not_found(now).is_err() {
                        // Not found before it expires: a wrong id or credentials.
                        tracker.observe_read_failure(ReadFailure::Unexpected, now);
                    }
                }
                Answer::Failed(failure) => tracker.observe_read_failure(failure, now),
            }
            self.store(row, id, tracker, config, now);
        }
        due
    }
}
