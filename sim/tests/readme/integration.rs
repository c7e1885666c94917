use hpp_session::{Action, ReadFailure, SessionId, Timestamp, Tracker, TrackerConfig};
use hpp_sim::integration::{Integration, Klarna};
use hpp_sim::{Delivery, ReadAnswer, Visit};

/// One session of my shop: the id and the tracker I store in my database.
pub struct MyShop {
    pub id: SessionId,
    pub tracker: Tracker,
    pub config: TrackerConfig,
}

impl Integration for MyShop {
    /// My callback endpoint: a hint (its secret is not checked here), never evidence.
    fn callback(&mut self, now: Timestamp, d: &Delivery, _secret_matches: bool) {
        if let Ok(s) = d.body.session_body().snapshot() {
            let event = Some(d.event_id.as_str());
            let _refused = self.tracker.observe_callback(&self.config, event, &s, now);
        }
    }

    /// My redirect endpoints: a hint too.
    fn redirect(&mut self, now: Timestamp, v: &Visit) {
        let _refused = self.tracker.observe_redirect(&self.id, v.redirect, now);
    }

    /// My poller wakes for anything owed at once, else when the next read is due.
    fn next_wake(&self, now: Timestamp) -> Option<Timestamp> {
        if !self.tracker.owed().is_empty() {
            return Some(now);
        }
        self.tracker.next_read(&self.config, now).map(|r| r.at)
    }

    /// My poller, then my executor.
    fn wake(&mut self, now: Timestamp, klarna: &mut Klarna<'_>) {
        self.poll(now, klarna);
        self.execute(now, klarna);
    }
}

impl MyShop {
    /// My poller: read when due, and report every answer.
    pub fn poll(&mut self, now: Timestamp, klarna: &mut Klarna<'_>) {
        if self.tracker.start_read(&self.config, now).is_some() {
            let failure = match klarna.read() {
                ReadAnswer::Session(body) => match body.session_body().snapshot() {
                    Ok(s) => self
                        .tracker
                        .observe_read(&self.config, &s, now)
                        .err()
                        .map(|_| ReadFailure::Unexpected),
                    Err(_) => Some(ReadFailure::Unexpected),
                },
                ReadAnswer::NotFound => self
                    .tracker
                    .observe_not_found(now)
                    .err()
                    .map(|_| ReadFailure::Unexpected),
                ReadAnswer::Failed(failure) => Some(failure),
            };
            if let Some(failure) = failure {
                self.tracker.observe_read_failure(failure, now);
            }
        }
    }

    /// My executor: do what is owed, and report each done.
    pub fn execute(&mut self, now: Timestamp, klarna: &mut Klarna<'_>) {
        while let Some(action) = self.tracker.next_action() {
            if action == Action::Disable {
                // Klarna's answer is evidence, and reports the disable done.
                let answer = klarna.disable();
                let _refused = self.tracker.observe_disable_answer(&self.id, answer, now);
                continue;
            }
            perform(&action, klarna);
            let _not_asked = self.tracker.done(action.id(&self.id));
        }
    }
}

/// One money or cart action, at Klarna or in my shop.
pub fn perform(action: &Action, klarna: &mut Klarna<'_>) {
    match action {
        Action::PlaceOrder {
            authorization_token,
            ..
        } => {
            klarna.create_order(authorization_token.expose_secret());
        }
        Action::RecordOrder { order_id, .. } => klarna.record_order(order_id.as_str()),
        Action::ReviewCompletion { .. } => klarna.review(),
        Action::Release { reason } => klarna.release(*reason),
        _ => {}
    }
}
