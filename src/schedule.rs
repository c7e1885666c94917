//! When to read a session: the safety net Klarna advises, since callbacks stop after a few failed
//! tries, designed around the one thing it must guarantee (money) and what it costs (every read
//! spends the merchant's rate budget, which placing orders shares).
//!
//! The guarantee and its cost are documented on [`ReadPolicy`].

use core::fmt;
use core::time::Duration;

use crate::action::AUTHORIZATION_VALIDITY;
use crate::claim::DEFAULT_MAX_CLOCK_SKEW;
use crate::timestamp::Timestamp;

/// The shortest interval [`ReadPolicy`] accepts between two reads of one session: Klarna's
/// playground shows about 5 requests a second on payments endpoints.
pub const MIN_READ_INTERVAL: Duration = Duration::from_millis(200);

/// The longest back-off after failed reads: once the failures stop, the next read comes at most
/// this late ([`crate::Tracker::observe_read_failure`]).
pub const MAX_READ_BACKOFF: Duration = Duration::from_secs(60);

/// The default [`ReadPolicy::detect_within`]: 45 minutes, leaving a quarter of the
/// authorization token's hour to place the order.
pub const DEFAULT_DETECT_WITHIN: Duration = Duration::from_secs(45 * 60);

/// How long a read the caller started ([`crate::Tracker::start_read`]) may go unanswered before
/// it counts as failed (timed out): 30 s. Until then it counts as the read that is due, so a
/// poller that asks again does not read the session twice; after it the tracker backs off as
/// after any failure. Set your HTTP client's timeout under it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The least of the authorization token's hour the guarantee leaves for placing the order
/// (the money call, and its wait for a window of the budget): 2 minutes.
pub const PLACE_ORDER_MARGIN: Duration = Duration::from_secs(2 * 60);

/// The longest [`ReadPolicy::detect_within`] accepted (with twice the `poll_lag` added): 55
/// minutes. The 5 minutes it leaves of the token's hour hold what the guarantee allows for on
/// top of it (a failed read's back-off, up to [`MAX_READ_BACKOFF`]; a read that never answers,
/// [`READ_TIMEOUT`] and its retry; [`DEFAULT_MAX_CLOCK_SKEW`] between Klarna's clock and the
/// caller's; for a poller with a lag, its lag once more for each of the two retries) and
/// [`PLACE_ORDER_MARGIN`] to place the order. Within it, no token found by a read is dead when
/// the order is placed, as long as at most one read before it fails and at most one never
/// answers; a longer run of failures (Klarna down, or a budget spent) delays the read by its
/// back-offs, and the guarantee counts from the last of them.
pub const MAX_DETECT_WITHIN: Duration = Duration::from_secs(55 * 60);

// What the 5 minutes hold, with 29 s to spare: a failed read's back-off at its ceiling, a read
// that timed out and the back-off before its retry (1 s when it is the first failure; a
// timeout after a run of failures waits longer, and G1 allows for that from the last
// failure), clock skew, and the margin to place the order.
const _: () = assert!(
    MAX_DETECT_WITHIN.as_secs()
        + MAX_READ_BACKOFF.as_secs()
        + READ_TIMEOUT.as_secs()
        + 1
        + DEFAULT_MAX_CLOCK_SKEW.as_secs()
        + PLACE_ORDER_MARGIN.as_secs()
        < AUTHORIZATION_VALIDITY.as_secs()
);

/// How a [`crate::Tracker`] schedules reads of its session ([`crate::Tracker::next_read`]).
///
/// # The guarantee
///
/// While a session is open, the next blind read is due no later than `last read + blind_gap`
/// (`blind_gap` = `detect_within − poll_lag`; before any read, `created + first` for a tracker
/// made by [`crate::Tracker::created`]), whatever arrives and whenever: no callback, however late
/// or however dated, and no redirect can put it off, and a read that fell due stays due until a
/// read is made. So a consumer's `COMPLETED` is found by a read at most `blind_gap` after it
/// happened, even when every callback and every redirect is lost. A caller that performs each
/// due read within `poll_lag` of the moment it fell due therefore confirms every `COMPLETED`
/// within `detect_within` of its `updated_at`, allowing for the skew between Klarna's clock and
/// the caller's, a failed read's back-off ([`MAX_READ_BACKOFF`]) and a read that never answers
/// ([`READ_TIMEOUT`]). [`MAX_DETECT_WITHIN`] keeps all of that inside the authorization token's
/// hour with [`PLACE_ORDER_MARGIN`] to spare. The property tests in `tests/schedule.rs` check
/// this over arbitrary histories, losses, late callbacks of earlier changes and pollers.
///
/// # The cost
///
/// Everything else a read achieves can wait for a hint, so the blind schedule backs off to the
/// guarantee: after each confirmed change, reads fall due `first` later, then after gaps as long
/// as the time since the change (doubling), up to `blind_gap`, and never later than the
/// guarantee. `first` is the gap itself unless set: a blind read every 45 minutes by default,
/// nothing sooner. Hints bring reads forward: a final
/// status claimed by a callback, a consumer's `success` or `cancel` redirect, or a disable just
/// asked make a read due at once ([`Urgency::Confirm`]), at most one every `hint_gap`. Each
/// session's gap is shortened by up to 1/32 by a spread drawn from its id, so that sessions
/// created together do not read together. With the defaults an abandoned session costs about 67
/// reads in its 48 hours instead of 302, and a paid session made with
/// [`crate::Tracker::created`] whose callback or redirect arrives costs 1 (the simulator's
/// default mix; README).
///
/// Built from [`ReadPolicy::DEFAULT`] with checked setters:
///
/// ```
/// use core::time::Duration;
/// use hpp_session::ReadPolicy;
///
/// // A cron job that wakes every 5 minutes, and orders found within 40 minutes.
/// let policy = ReadPolicy::DEFAULT
///     .with_detect_within(Duration::from_secs(40 * 60))?
///     .with_poll_lag(Duration::from_secs(5 * 60))?;
/// assert_eq!(policy.blind_gap(), Duration::from_secs(35 * 60));
/// # Ok::<(), hpp_session::PolicyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadPolicy {
    /// `None`: the gap.
    first: Option<Duration>,
    hint_gap: Duration,
    detect_within: Duration,
    poll_lag: Duration,
}

impl Default for ReadPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl ReadPolicy {
    /// `COMPLETED` found within 45 minutes by a caller that reads when due; blind reads every
    /// 45 minutes after a change (the guarantee and nothing more: what else a read finds can
    /// wait for a hint); reads a hint asks for at most one every 10 s.
    pub const DEFAULT: Self = Self {
        first: None,
        hint_gap: Duration::from_secs(10),
        detect_within: DEFAULT_DETECT_WITHIN,
        poll_lag: Duration::ZERO,
    };

    /// The policy with `detect_within`: the longest a `COMPLETED` may go unconfirmed after its
    /// `updated_at` when every hint is lost.
    ///
    /// # Errors
    /// [`PolicyError::DetectsAfterTokenExpiry`] when it plus twice `poll_lag` is over
    /// [`MAX_DETECT_WITHIN`] (the guarantee and its allowances would not leave time to place the
    /// order in the token's hour);
    /// [`PolicyError::LagExceedsDetection`] when it leaves under [`MIN_READ_INTERVAL`] between
    /// reads after `poll_lag`.
    pub const fn with_detect_within(self, detect_within: Duration) -> Result<Self, PolicyError> {
        Self {
            detect_within,
            ..self
        }
        .checked()
    }

    /// The policy with `poll_lag`: the longest the caller takes to perform a read once it is due
    /// (a cron job's tick; zero for a caller that sleeps until [`crate::Tracker::next_read`]).
    /// Blind reads come that much earlier, so the guarantee holds for such a caller.
    ///
    /// # Errors
    /// [`PolicyError::LagExceedsDetection`] when less than [`MIN_READ_INTERVAL`] would be left
    /// between reads; [`PolicyError::DetectsAfterTokenExpiry`] when `detect_within` plus twice
    /// the lag (a failed read's retry and a timed-out one's wait for the poller too) is over
    /// [`MAX_DETECT_WITHIN`].
    pub const fn with_poll_lag(self, poll_lag: Duration) -> Result<Self, PolicyError> {
        Self { poll_lag, ..self }.checked()
    }

    /// The policy with `first`: how long after a confirmed change the first blind read falls
    /// due (capped at [`ReadPolicy::blind_gap`]; unset, it is the gap). Any value keeps the
    /// guarantee; shorter ones cost reads.
    ///
    /// # Errors
    /// None today; a `Result` like the other setters.
    pub const fn with_first(self, first: Duration) -> Result<Self, PolicyError> {
        Self {
            first: Some(first),
            ..self
        }
        .checked()
    }

    /// The policy with `hint_gap`: the shortest gap before a read a hint asks for (a forged
    /// callback cannot make a session read more often than this).
    ///
    /// # Errors
    /// [`PolicyError::IntervalTooShort`] under [`MIN_READ_INTERVAL`].
    pub const fn with_hint_gap(self, hint_gap: Duration) -> Result<Self, PolicyError> {
        Self { hint_gap, ..self }.checked()
    }

    const fn checked(self) -> Result<Self, PolicyError> {
        if self.hint_gap.as_nanos() < MIN_READ_INTERVAL.as_nanos() {
            return Err(PolicyError::IntervalTooShort);
        }
        let with_retries = self.detect_within.as_nanos() + 2 * self.poll_lag.as_nanos();
        if with_retries > MAX_DETECT_WITHIN.as_nanos() {
            return Err(PolicyError::DetectsAfterTokenExpiry);
        }
        match self.detect_within.checked_sub(self.poll_lag) {
            Some(gap) if gap.as_nanos() >= MIN_READ_INTERVAL.as_nanos() => Ok(self),
            _ => Err(PolicyError::LagExceedsDetection),
        }
    }

    /// How long after a confirmed change the first blind read falls due: the one set
    /// ([`ReadPolicy::with_first`]), capped at the gap, or the gap.
    #[must_use]
    pub const fn first(&self) -> Duration {
        let gap = self.blind_gap();
        match self.first {
            Some(first) if first.as_nanos() < gap.as_nanos() => first,
            _ => gap,
        }
    }

    /// `first` as set ([`ReadPolicy::with_first`]); `None`: the gap.
    #[cfg(feature = "serde")]
    pub(crate) const fn first_setting(&self) -> Option<Duration> {
        self.first
    }

    /// The shortest gap before a read a hint asks for.
    #[must_use]
    pub const fn hint_gap(&self) -> Duration {
        self.hint_gap
    }

    /// The longest a `COMPLETED` goes unconfirmed after its `updated_at`, for a caller that
    /// reads within `poll_lag` of a read falling due.
    #[must_use]
    pub const fn detect_within(&self) -> Duration {
        self.detect_within
    }

    /// The longest the caller takes to perform a due read.
    #[must_use]
    pub const fn poll_lag(&self) -> Duration {
        self.poll_lag
    }

    /// The longest gap between two reads of an open session: `detect_within − poll_lag`.
    #[must_use]
    pub const fn blind_gap(&self) -> Duration {
        match self.detect_within.checked_sub(self.poll_lag) {
            Some(gap) => gap,
            None => MIN_READ_INTERVAL,
        }
    }

    /// When the next blind read falls due, for a schedule anchored at the confirmed change
    /// `anchor` (when the caller learned it) whose latest read was at `last_read`: after the
    /// last read by the time since the anchor, clamped to `first..=blind_gap`; for a change
    /// learned after the last read (a verified callback), `first` after the last read, which
    /// is never later than the slot the read before it had, and may be at once. Never more
    /// than `blind_gap` after the last read, whatever the anchor: that is the guarantee; and
    /// learning a change never puts off a read that was scheduled, or one that fell due.
    ///
    /// `spread` (any value; the tracker draws it from the session id) takes up to 1/32 off the
    /// gap, so that sessions created in the same second do not read in the same second for
    /// their whole lives: their reads drift apart instead of arriving at Klarna's limiter
    /// together.
    #[must_use]
    pub fn blind_due(&self, anchor: Timestamp, last_read: Timestamp, spread: u32) -> Timestamp {
        let gap = self.blind_gap();
        // In whole milliseconds, like Klarna's timestamps.
        let off = (gap.as_millis() / 32) * u128::from(spread % 1024) / 1024;
        let cap = gap.saturating_sub(Duration::from_millis(u64::try_from(off).unwrap_or(0)));
        let first = self.first().min(cap);
        // Never at the read itself, even with `first` zero: a poller must not spin.
        let latest = last_read.saturating_add(cap.max(MIN_READ_INTERVAL));
        let due = match anchor.duration_since(last_read) {
            // A change learned after the last read: `first` after that read. Not `first` after
            // the change: the slot the old anchor gave is at least that soon, and may have
            // fallen due already; it must stay due, however late the evidence came.
            Some(after) if !after.is_zero() => last_read.saturating_add(first),
            _ => {
                let since = last_read.duration_since(anchor).unwrap_or_default();
                last_read.saturating_add(since.max(first).min(cap))
            }
        };
        due.max(last_read.saturating_add(MIN_READ_INTERVAL))
            .min(latest)
    }
}

/// How urgent a due read is, least urgent first (`Ord`): a caller with less budget than due reads
/// performs the most urgent first, and the oldest first among equals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Urgency {
    /// The safety net: nothing suggests a change. Each one is still part of the guarantee, so a
    /// caller must not drop them, only order them last.
    Blind,
    /// No authenticated evidence yet (the read after creating the session).
    Initial,
    /// A read expected to decide money or a release: a final status a callback claims, a
    /// consumer's redirect, a disable just asked for.
    Confirm,
}

impl Urgency {
    /// `"blind"`, `"initial"` or `"confirm"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Blind => "blind",
            Self::Initial => "initial",
            Self::Confirm => "confirm",
        }
    }
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The next read of a session: due at `at` (which may be in the past: a read that fell due and
/// was not made stays due, "due since `at`"), and how urgent it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NextRead {
    /// When it falls (or fell) due.
    pub at: Timestamp,
    /// How urgent it is.
    pub urgency: Urgency,
}

impl NextRead {
    /// Whether the read is due at `now`: the question a poller asks.
    #[must_use]
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.at <= now
    }

    /// How long it has been due at `now` (`None` when it is not due yet).
    #[must_use]
    pub fn overdue(&self, now: Timestamp) -> Option<Duration> {
        now.duration_since(self.at)
    }
}

/// Why a read of the session failed ([`crate::Tracker::observe_read_failure`]). It says nothing
/// about the session; the tracker backs off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadFailure {
    /// 429: the merchant is over Klarna's rate limit; every request is refused until the window
    /// resets. `reset` is Klarna's `X-Ratelimit-Reset`, when it was sent (taken as at most
    /// [`MAX_READ_BACKOFF`]).
    RateLimited {
        /// How long until the window resets.
        reset: Option<Duration>,
    },
    /// A 5xx.
    ServerError,
    /// No answer in time.
    Timeout,
    /// Any other answer that says nothing usable: a body that does not parse or that the
    /// tracker refused, or a 404 it refused ([`crate::NotFoundError`]: wrong id or
    /// credentials). (A read started with [`crate::Tracker::start_read`] and never reported
    /// counts as failed after [`READ_TIMEOUT`] all the same.)
    Unexpected,
}

impl fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited { reset: Some(reset) } => {
                write!(f, "rate limited (429), window resets in {reset:?}")
            }
            Self::RateLimited { reset: None } => f.write_str("rate limited (429)"),
            Self::ServerError => f.write_str("server error (5xx)"),
            Self::Timeout => f.write_str("timed out"),
            Self::Unexpected => f.write_str("unexpected answer"),
        }
    }
}

/// The back-off after `failures` consecutive failed reads (1 s, 2 s, 4 s, … up to
/// [`MAX_READ_BACKOFF`]), less up to half of it by `jitter` (any value; the caller's spread);
/// after a rate limit's `reset`, never before it and spread over the second after it (Klarna
/// asks for jitter: sessions refused together must not all come back at the reset instant),
/// never past [`MAX_READ_BACKOFF`].
pub(crate) fn backoff(failures: u8, failure: ReadFailure, jitter: u32) -> Duration {
    let exp = u32::from(failures.saturating_sub(1)).min(16);
    let full = Duration::from_secs(1u64 << exp).min(MAX_READ_BACKOFF);
    // Up to half of it off, in 1/256 steps, in whole milliseconds.
    let off = full.as_millis() * u128::from(jitter % 129) / 256;
    let spread = full.saturating_sub(Duration::from_millis(u64::try_from(off).unwrap_or(0)));
    match failure {
        ReadFailure::RateLimited { reset: Some(reset) } => {
            let after_reset = Duration::from_millis(u64::from((jitter >> 8) % 1_000));
            let after = reset
                .min(MAX_READ_BACKOFF)
                .saturating_add(after_reset)
                .min(MAX_READ_BACKOFF);
            spread.max(after)
        }
        _ => spread,
    }
}

/// A [`ReadPolicy`] that would read too often, or could not keep its guarantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyError {
    /// `hint_gap` is under [`MIN_READ_INTERVAL`].
    IntervalTooShort,
    /// `detect_within` plus twice `poll_lag` is over [`MAX_DETECT_WITHIN`]: with the
    /// guarantee's allowances (a failed read's back-off, a read that never answers, clock skew,
    /// the poller's lag on each retry) the order could not be placed with a token found that
    /// late.
    DetectsAfterTokenExpiry,
    /// `poll_lag` leaves less than [`MIN_READ_INTERVAL`] of `detect_within` between reads.
    LagExceedsDetection,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IntervalTooShort => write!(
                f,
                "read interval under {} ms would exceed Klarna's rate limits",
                MIN_READ_INTERVAL.as_millis()
            ),
            Self::DetectsAfterTokenExpiry => write!(
                f,
                "detect_within plus twice poll_lag over {} s would not leave time to place the \
                 order within the authorization token's 60 minutes",
                MAX_DETECT_WITHIN.as_secs()
            ),
            Self::LagExceedsDetection => {
                f.write_str("poll_lag leaves no time between reads within detect_within")
            }
        }
    }
}

impl core::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_less_its_spread_and_waits_for_the_reset() {
        let ms = Duration::from_millis;
        let server = ReadFailure::ServerError;
        assert_eq!(backoff(1, server, 0), ms(1_000));
        // Up to half off, by the spread, in 1/256 steps.
        assert_eq!(backoff(1, server, 128), ms(500));
        assert_eq!(backoff(1, server, 64), ms(750));
        assert_eq!(backoff(1, server, 129), ms(1_000));
        assert_eq!(backoff(2, server, 0), ms(2_000));
        assert_eq!(backoff(6, server, 0), ms(32_000));
        assert_eq!(backoff(7, server, 0), MAX_READ_BACKOFF);
        assert_eq!(backoff(u8::MAX, server, 128), MAX_READ_BACKOFF / 2);
        let limited = |s| ReadFailure::RateLimited {
            reset: Some(Duration::from_secs(s)),
        };
        assert_eq!(backoff(1, limited(5), 0), ms(5_000));
        assert_eq!(backoff(1, limited(0), 128), ms(500));
        // A reset past the longest back-off is taken as that.
        assert_eq!(backoff(1, limited(3_600), 0), MAX_READ_BACKOFF);
        // After a reset, spread over the second after it by the upper bits of the jitter.
        assert_eq!(backoff(1, limited(5), 999 << 8), ms(5_999));
        assert_eq!(backoff(1, limited(5), 1_000 << 8), ms(5_000));
        assert_eq!(backoff(1, limited(5), (250 << 8) | 128), ms(5_250));
        assert_eq!(backoff(1, limited(59), 999 << 8), ms(59_999));
        // Never past the longest back-off.
        assert_eq!(backoff(1, limited(60), 999 << 8), MAX_READ_BACKOFF);
    }
}
