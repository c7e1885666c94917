//! The simulated consumers: each HPP session created is one seeded history from the crate's
//! simulator, played on the double's clock. What reaches the merchant is what the simulator
//! says reaches it (lost calls and events, duplicates from late acknowledgements, delays, forged
//! callbacks and redirects), and each callback call the merchant really fails to answer with a
//! 2xx within the timeout is made again a few seconds later, up to four calls in all.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hpp_session::Timestamp;
use hpp_session::{Redirect, Status};
use hpp_sim::people::Opening;
use hpp_sim::{Delivery, SimConfig, Simulator, Visit};
use serde_json::json;
use tokio::sync::Notify;

use crate::world::{MerchantUrls, Session, Shop};
use crate::{Double, Shared};

/// Klarna's calls for one callback event.
const CALLS_PER_EVENT: u8 = 4;
/// Between two calls of one event (Klarna: "a few seconds later").
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Something a consumer (or the adversary) does at a time.
#[derive(Clone, Debug)]
enum Job {
    Callback {
        session_id: String,
        delivery: Box<Delivery>,
        call: u8,
    },
    Visit {
        session_id: String,
        visit: Visit,
    },
}

/// Due times (with a sequence number), the jobs by sequence number, the next sequence number.
type Queue = (
    BinaryHeap<Reverse<(Timestamp, u64)>>,
    HashMap<u64, Job>,
    u64,
);

/// The queue of consumers' jobs, by time.
#[derive(Debug, Default)]
pub struct Jobs {
    queue: Shared<Queue>,
    notify: Notify,
}

impl Jobs {
    fn push(&self, at: Timestamp, job: Job) {
        let mut q = self.queue.lock();
        let seq = q.2;
        q.2 += 1;
        q.0.push(Reverse((at, seq)));
        q.1.insert(seq, job);
    }

    fn pop_due(&self, now: Timestamp) -> (Vec<Job>, Option<Timestamp>) {
        let mut q = self.queue.lock();
        let mut due = Vec::new();
        while let Some(&Reverse((at, seq))) = q.0.peek() {
            if at > now {
                return (due, Some(at));
            }
            q.0.pop();
            due.extend(q.1.remove(&seq));
        }
        (due, None)
    }

    /// Wakes the consumers' loop (the clock moved).
    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

impl Double {
    /// Creates an HPP session for a payment session and starts its consumer: `None` if the
    /// payment session is unknown, closed by its order, or in its last hour (its HPP sessions
    /// expire an hour before it, [`hpp_sim::money::hpp_expires_at`]). A payment session may have
    /// several (Klarna calls it bad practice, and allows it). Returns its id and `expires_at`.
    pub(crate) fn start_consumer(
        &self,
        payment_session_id: &str,
        urls: MerchantUrls,
    ) -> Option<(String, String)> {
        let now = self.clock.now();
        let mut world = self.world.lock();
        let index = world.created;
        if world.payment_ordered(payment_session_id, now) {
            return None;
        }
        let payment = world.payment_sessions.get_mut(payment_session_id)?;
        // An HPP session expires an hour before its payment session: in that last hour (and
        // after) it could take no payment, so none is made.
        let expires_by = hpp_sim::money::hpp_expires_at(payment.created_at);
        if now >= expires_by {
            return None;
        }
        let sim = SimConfig {
            start: now,
            arrival_gap: Duration::ZERO,
            read_failure: 0,
            // Only the merchant disables, by its `DELETE`: never the double by itself.
            merchant_disables: false,
            ..self.config.sim
        };
        // Nothing happens to a session until someone opens its page: made unopened, made again
        // with the consumer's walk when the page is opened ([`Double::open_page`]).
        let scenario =
            Simulator::new(sim, self.config.seed).scenario_expiring(index, None, Some(expires_by));
        let session_id = scenario.history.session_id.to_string();
        payment.hpp_sessions.push(session_id.clone());
        world.created += 1;
        let expires_at = scenario.history.expires_at.to_string();
        world.sessions.insert(
            session_id.clone(),
            Session {
                scenario,
                urls,
                payment_session_id: payment_session_id.to_owned(),
                simulator: (sim, index),
                opened_at: None,
                money: hpp_sim::money::Money::default(),
                disables: 0,
                shop: Shop::default(),
            },
        );
        Some((session_id, expires_at))
    }

    /// The consumer opens the page at `redirect_url` (the merchant handed it over): from now on
    /// the session's history is played, starting now however long after its creation. `false`
    /// for an unknown session. Opening it again changes nothing, and neither does opening a
    /// session the merchant disabled or that expired (the page shows it ended).
    pub(crate) fn open_page(&self, session_id: &str) -> bool {
        let now = self.clock.now();
        let mut world = self.world.lock();
        let Some(session) = world.sessions.get_mut(session_id) else {
            return false;
        };
        let history = &session.scenario.history;
        if session.opened_at.is_some()
            || history.status_at(now).is_final()
            || now >= history.expires_at
        {
            return true;
        }
        let (sim, index) = session.simulator;
        let expires_by = Some(history.expires_at);
        session.scenario =
            Simulator::new(sim, self.config.seed).scenario_expiring(index, Some(now), expires_by);
        session.opened_at = Some(now);
        let scenario = &session.scenario;
        let token = scenario.history.completion.authorization_token.clone();
        for delivery in scenario.deliveries() {
            let job = Job::Callback {
                session_id: session_id.to_owned(),
                delivery: Box::new(delivery.clone()),
                call: 1,
            };
            self.jobs.push(delivery.at, job);
        }
        for visit in &scenario.visits {
            let job = Job::Visit {
                session_id: session_id.to_owned(),
                visit: *visit,
            };
            self.jobs.push(visit.at, job);
        }
        if let Some(token) = token {
            world
                .tokens
                .insert(token.to_string(), session_id.to_owned());
        }
        drop(world);
        self.jobs.wake();
        true
    }
}

/// Runs the consumers forever.
pub(crate) async fn run(double: Arc<Double>) {
    loop {
        let (due, next) = double.jobs.pop_due(double.clock.now());
        for job in due {
            tokio::spawn(perform(Arc::clone(&double), job));
        }
        let wait = next.map_or(Duration::from_secs(1), |at| {
            double.clock.real_until(at).min(Duration::from_secs(1))
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = double.jobs.notify.notified() => {}
        }
    }
}

async fn perform(double: Arc<Double>, job: Job) {
    match job {
        Job::Callback {
            session_id,
            delivery,
            call,
        } => callback(&double, session_id, delivery, call).await,
        Job::Visit { session_id, visit } => redirect(&double, &session_id, visit).await,
    }
}

fn substitute(url: &str, session_id: &str, token: &str, order_id: &str) -> String {
    url.replace("{{session_id}}", session_id)
        .replace("{{authorization_token}}", token)
        .replace("{{order_id}}", order_id)
}

async fn callback(double: &Arc<Double>, session_id: String, delivery: Box<Delivery>, call: u8) {
    let url = {
        let world = double.world.lock();
        let Some(session) = world.sessions.get(&session_id) else {
            return;
        };
        // A disable cancels the consumer's later changes, and their callbacks.
        if !session.scenario.deliveries().contains(&*delivery) {
            return;
        }
        let Some(url) = &session.urls.status_update else {
            return;
        };
        substitute(url, &session_id, "", "")
    };
    // The adversary knows the session ids and the shape of the URL, not the secret in it: it
    // guesses its last path segment.
    let url = if delivery.forged {
        match url.rsplit_once('/') {
            Some((head, _)) => format!("{head}/{}", double.uuid()),
            None => url,
        }
    } else {
        url
    };
    let mut session = serde_json::to_value(delivery.body.session_body()).unwrap_or_default();
    double.restamp(&mut session);
    let body = json!({
        "event_id": delivery.event_id.as_str(),
        "session": session,
    });
    let sent = std::time::Instant::now();
    let answered = double
        .http
        .post(&url)
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    {
        let mut world = double.world.lock();
        world.callbacks.0 += 1;
        world.callbacks.1 += u64::from(answered);
        if answered {
            world
                .callback_ms
                .push(sent.elapsed().as_secs_f64() * 1_000.0);
        }
    }
    if !answered && !delivery.forged && call < CALLS_PER_EVENT {
        let at = double.clock.now().saturating_add(RETRY_AFTER);
        let job = Job::Callback {
            session_id,
            delivery,
            call: call + 1,
        };
        double.jobs.push(at, job);
        double.jobs.wake();
    }
}

async fn redirect(double: &Arc<Double>, session_id: &str, visit: Visit) {
    let url = {
        let world = double.world.lock();
        let Some(session) = world.sessions.get(session_id) else {
            return;
        };
        if !session.scenario.visits.contains(&visit) {
            return;
        }
        let urls = &session.urls;
        let url = match visit.redirect {
            Redirect::Success => &urls.success,
            Redirect::Failure => &urls.failure,
            Redirect::Back => &urls.back,
            Redirect::Cancel => &urls.cancel,
            _ => &urls.error,
        };
        let Some(url) = url else {
            return;
        };
        let completion = &session.scenario.history.completion;
        let paid = visit.redirect.status() == Status::Completed && !visit.forged;
        let token = completion
            .authorization_token
            .as_deref()
            .filter(|_| paid)
            .unwrap_or("");
        let order = completion
            .order_id
            .as_deref()
            .filter(|_| paid)
            .unwrap_or("");
        substitute(url, session_id, token, order)
    };
    let _answer = double.http.get(&url).send().await;
    double.world.lock().redirects += 1;
}

impl Double {
    /// A person's browser opens `page` (the double's `redirect_url`) as `opening` says, on the
    /// double's clock: at once, later, twice, or never ([`hpp_sim::people`]). Whether the page
    /// was opened (answered).
    pub async fn open_as_a_person(
        &self,
        http: &reqwest::Client,
        page: &str,
        opening: Opening,
    ) -> bool {
        let now = self.clock.now();
        let Some(first) = opening.first(now) else {
            return false;
        };
        let opened = self.open_at(http, page, first).await;
        if let Opening::Twice(again) = opening {
            self.open_at(http, page, first.saturating_add(again)).await;
        }
        opened
    }

    /// Opens `page` once the double's clock reaches `at`: whether it answered with success.
    async fn open_at(&self, http: &reqwest::Client, page: &str, at: Timestamp) -> bool {
        while self.clock.now() < at {
            let wait = self.clock.real_until(at).min(Duration::from_secs(1));
            tokio::time::sleep(wait).await;
        }
        http.get(page)
            .send()
            .await
            .is_ok_and(|answer| answer.status().is_success())
    }
}
