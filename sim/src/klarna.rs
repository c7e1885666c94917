//! What Klarna sends and answers for one history: status callbacks on its delivery schedule
//! (with loss, duplicates and delays), forged callbacks from an adversary, and reads.

use core::time::Duration;

use super::history::{Change, CompletionFields, History};
use super::rng::Rng;
use super::{SimConfig, Text};
use hpp_session::wire::SessionBody;
use hpp_session::{ReadFailure, Redirect, Status, Timestamp, place_by};

/// The most redirects one scenario holds: one per consumer change, and the forged ones.
pub const MAX_VISITS: usize = super::history::MAX_WALK + MAX_FORGED;

/// The most deliveries one scenario holds, exactly the worst case: every call of every consumer
/// change ([`CALLS_PER_EVENT`] × [`super::history::MAX_WALK`]; the merchant's disable sends
/// none), and the forged ones.
pub const MAX_DELIVERIES: usize = CALLS_PER_EVENT * super::history::MAX_WALK + MAX_FORGED;

/// The most forged callbacks posted to one session.
pub const MAX_FORGED: usize = 3;

/// How long Klarna waits for a 2xx before it calls again.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(3);

/// How many times Klarna calls for one event (one call and three retries).
pub const CALLS_PER_EVENT: usize = 4;

/// How late a late call ([`SimConfig::late`]) arrives, in milliseconds: 1 minute to 2 hours
/// after it was made (held in a queue, a proxy, a retrying load balancer), so after the
/// callbacks of later changes.
pub const LATE: (u64, u64) = (60_000, 2 * 3_600_000);

/// Room for `Timestamp`'s text.
pub type Stamp = heapless::String<{ Timestamp::MAX_TEXT_LEN }>;

fn stamp(t: Timestamp) -> Stamp {
    use core::fmt::Write as _;
    let mut s = Stamp::new();
    // `MAX_TEXT_LEN` is the longest text `Display` writes.
    let _ = write!(s, "{t}");
    s
}

/// A session object as a read returns it and a callback carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    /// `session_id`.
    pub session_id: Text,
    /// `status`.
    pub status: Status,
    /// `updated_at`, as Klarna writes it.
    pub updated_at: Stamp,
    /// `expires_at`, as Klarna writes it.
    pub expires_at: Stamp,
    /// The completion fields (on `COMPLETED`; a forged body may carry them on any status).
    pub completion: CompletionFields,
}

impl Body {
    /// The body as the crate's wire type, borrowing from it.
    #[must_use]
    pub fn session_body(&self) -> SessionBody<'_> {
        SessionBody {
            session_id: Some(self.session_id.as_str().into()),
            status: Some(self.status.as_str().into()),
            updated_at: Some(self.updated_at.as_str().into()),
            expires_at: Some(self.expires_at.as_str().into()),
            authorization_token: self
                .completion
                .authorization_token
                .as_deref()
                .map(Into::into),
            order_id: self.completion.order_id.as_deref().map(Into::into),
            klarna_reference: self.completion.klarna_reference.as_deref().map(Into::into),
        }
    }
}

impl History {
    /// Klarna's answer to a read at `at` that does not fail: 404 from `expires_at` on, otherwise
    /// the session as of `at`.
    #[must_use]
    pub fn answer(&self, at: Timestamp) -> ReadAnswer {
        if at >= self.expires_at {
            return ReadAnswer::NotFound;
        }
        ReadAnswer::Session(self.body_after(self.change_at(at)))
    }

    /// The session object as it is right after `change` (or, with `None`, right after creation).
    #[must_use]
    pub fn body_after(&self, change: Option<&Change>) -> Body {
        let (status, updated_at) =
            change.map_or((Status::Waiting, self.created_at), |c| (c.status, c.at));
        Body {
            session_id: self.session_id.clone(),
            status,
            updated_at: stamp(updated_at),
            expires_at: stamp(self.expires_at),
            completion: if status == Status::Completed {
                self.completion.clone()
            } else {
                CompletionFields::default()
            },
        }
    }
}

/// A status callback as it reaches the integrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// When it arrives.
    pub at: Timestamp,
    /// `event_id`.
    pub event_id: Text,
    /// `session`.
    pub body: Body,
    /// Posted by an adversary, not by Klarna (for the test's report; the integrator cannot know).
    pub forged: bool,
}

/// The consumer's browser (or an adversary) opening one of the merchant's redirect URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visit {
    /// When it reached the merchant.
    pub at: Timestamp,
    /// Which URL.
    pub redirect: Redirect,
    /// The `updated_at` of the change it follows (a forged one: its own arrival).
    pub change_at: Timestamp,
    /// Opened by an adversary, not by the consumer (for the test's report).
    pub forged: bool,
}

/// What a read answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "the crate never allocates; an answer lives briefly on the stack"
)]
pub enum ReadAnswer {
    /// 200 with the session as it is at the time of the read.
    Session(Body),
    /// 404: the session expired.
    NotFound,
    /// The read failed and says nothing about the session: a 429 (with Klarna's
    /// `X-Ratelimit-Reset` of one second) or a 5xx.
    Failed(ReadFailure),
}

/// Klarna's answer to create-order with the authorization token `history` made, at `at`: the
/// order is created when the consumer had authorized by then and the token's hour
/// ([`hpp_session::place_by`]) has not ended. An order at exactly authorization + 60 minutes is
/// refused, as Klarna refuses it (`NOT_FOUND`, invalid authorization token). The double's HTTP
/// create-order and the fleet both answer with this: the one home of the token's hour.
#[must_use]
pub fn token_accepted(history: &History, at: Timestamp) -> bool {
    history
        .changes
        .iter()
        .find(|c| c.status == Status::Completed && c.at <= at)
        .is_some_and(|authorized| at < place_by(authorized.at))
}

/// Everything that reaches the integrator by callback, sorted by arrival.
pub(super) fn deliveries(
    history: &History,
    rng: &mut Rng,
    config: &SimConfig,
) -> heapless::Vec<Delivery, MAX_DELIVERIES> {
    let mut out = heapless::Vec::<(Delivery, u32), MAX_DELIVERIES>::new();
    let mut seq = 0;
    let mut push = |out: &mut heapless::Vec<_, MAX_DELIVERIES>, d: Delivery| {
        // The bound counts every call that can be made.
        let _ = out.push((d, seq));
        seq += 1;
    };
    for change in history.changes.iter().filter(|c| c.calls_back()) {
        let event_id = rng.uuid();
        if rng.chance(config.event_loss) {
            // All four calls fail: Klarna gives up on the event.
            continue;
        }
        let mut call = after(change.at, rng.range(50, 1_000));
        for _ in 0..CALLS_PER_EVENT {
            let reached = !rng.chance(config.call_loss);
            let acknowledged = reached && !rng.chance(config.slow_ack);
            if reached {
                let mut delay = rng.range(0, millis(config.max_delay) + 1);
                // Drawn only when asked for, so that the other streams stay as they were.
                if config.late > 0 && rng.chance(config.late) {
                    delay += rng.range(LATE.0, LATE.1);
                }
                let delivery = Delivery {
                    at: after(call, delay),
                    event_id: event_id.clone(),
                    body: history.body_after(Some(change)),
                    forged: false,
                };
                push(&mut out, delivery);
            }
            if acknowledged {
                break;
            }
            call = after(call, millis(CALLBACK_TIMEOUT) + rng.range(1_000, 5_000));
        }
    }
    if rng.chance(config.forged) {
        for _ in 0..rng.range(1, MAX_FORGED as u64 + 1) {
            let forged = forge(history, rng, &out);
            push(&mut out, forged);
        }
    }
    out.sort_unstable_by(|(a, i), (b, j)| a.at.cmp(&b.at).then(i.cmp(j)));
    out.into_iter().map(|(d, _)| d).collect()
}

/// The redirects that reach the merchant, sorted by arrival: after each consumer change that has
/// a redirect URL, with probability `config.redirect`, 0.2 to 5 s later; and, for a session an
/// adversary attacks, one or two forged ones at any time.
pub(super) fn visits(
    history: &History,
    rng: &mut Rng,
    config: &SimConfig,
) -> heapless::Vec<Visit, MAX_VISITS> {
    let mut out = heapless::Vec::<Visit, MAX_VISITS>::new();
    if config.redirect == 0 && config.forged == 0 {
        // Draw nothing: the scenario's other streams stay as they were.
        return out;
    }
    for change in history.changes.iter().filter(|c| c.calls_back()) {
        let Some(redirect) = Redirect::after(change.status) else {
            continue;
        };
        if rng.chance(config.redirect) {
            let at = after(change.at, rng.range(200, 5_000));
            // One per change: the bound holds them all.
            let _ = out.push(Visit {
                at,
                redirect,
                change_at: change.at,
                forged: false,
            });
        }
    }
    if rng.chance(config.forged) {
        let span = millis(super::history::SESSION_LIFETIME);
        for _ in 0..rng.range(1, 3) {
            let redirect = rng.pick(&Redirect::ALL).unwrap_or(Redirect::Success);
            let at = after(history.created_at, rng.range(0, span));
            let _ = out.push(Visit {
                at,
                redirect,
                change_at: at,
                forged: true,
            });
        }
    }
    out.sort_unstable_by_key(|v| v.at);
    out
}

/// A callback an adversary who knows the callback URL posts: any status, any ids, any times
/// (some in the future, some with a past `expires_at`), sometimes replaying a real `event_id`.
fn forge(
    history: &History,
    rng: &mut Rng,
    real: &heapless::Vec<(Delivery, u32), MAX_DELIVERIES>,
) -> Delivery {
    let span = millis(super::history::SESSION_LIFETIME) + 3_600_000;
    let at = after(history.created_at, rng.range(0, span));
    // Up to two hours either side of its arrival.
    let updated_at = after(before(at, 2 * 3_600), rng.range(0, 4 * 3_600_000));
    let expires_at = after(history.created_at, rng.range(0, 2 * span));
    let status = rng.pick(&Status::ALL).unwrap_or(Status::Completed);
    let field = |rng: &mut Rng, f: fn(&mut Rng) -> Text| rng.chance(500).then(|| f(rng));
    let completion = CompletionFields {
        authorization_token: field(rng, Rng::uuid),
        order_id: field(rng, Rng::uuid),
        klarna_reference: field(rng, Rng::reference),
    };
    let real_ids = real.len() as u64;
    let replayed = rng
        .chance(333)
        .then(|| real.get(usize::try_from(rng.range(0, real_ids)).unwrap_or(0)))
        .flatten();
    Delivery {
        at,
        event_id: replayed.map_or_else(|| rng.uuid(), |(d, _)| d.event_id.clone()),
        body: Body {
            session_id: history.session_id.clone(),
            status,
            updated_at: stamp(updated_at),
            expires_at: stamp(expires_at),
            completion,
        },
        forged: true,
    }
}

/// `t` plus `ms` milliseconds.
fn after(t: Timestamp, ms: u64) -> Timestamp {
    t.saturating_add(Duration::from_millis(ms))
}

/// `t` minus `secs` seconds, or `t` when that is out of range.
fn before(t: Timestamp, secs: i64) -> Timestamp {
    Timestamp::from_unix(t.unix_seconds().saturating_sub(secs), t.subsec_nanos()).unwrap_or(t)
}

/// `d` in whole milliseconds.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
