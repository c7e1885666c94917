//! Klarna's side of the money for one HPP session: create-order and cancel authorization with
//! its token, and what they did. The double's HTTP calls, the fleet and
//! [`drive_integration`](crate::integration::drive_integration) all answer with [`Money`]: a
//! rule about money is written here once.
//!
//! - An order is created only within the token's hour ([`token_accepted`]), for the session's
//!   own token, while the payment session lives and its authorization is not cancelled; else
//!   `404` (an invalid authorization token).
//! - Only one order per payment session succeeds, Klarna's own included ("several
//!   authorizations may exist, only one can create an order"): a second create-order is refused
//!   (`400`). With the same HPP session's token it is counted as the merchant asking for the
//!   money twice, because whether Klarna de-duplicates a repeated create-order is not
//!   documented; with another HPP session's token, as refused and harmless.
//!
//! <https://docs.klarna.com/payments/web-payments/additional-resources/order-management/create-an-order/>

use core::time::Duration;

use hpp_session::{Status, Timestamp};

use super::History;
use super::klarna::token_accepted;

/// A payment session is valid for 48 hours after its last update
/// (<https://docs.klarna.com/payments/web-payments/integrate-with-klarna-payments/integrate-via-sdk/step-1-initiate-a-payment/>):
/// then it reads 404, its tokens create no order, and no HPP session can be created for it.
pub const PAYMENT_SESSION_LIFETIME: Duration = Duration::from_secs(48 * 3600);

/// An HPP session expires this long before its payment session (HPP: the consumer can pay
/// "until 1 hour before the payment session expires").
pub const HPP_ENDS_BEFORE_PAYMENT: Duration = Duration::from_secs(3600);

/// When a payment session last updated at `updated_at` expires.
#[must_use]
pub fn payment_expires_at(updated_at: Timestamp) -> Timestamp {
    updated_at.saturating_add(PAYMENT_SESSION_LIFETIME)
}

/// When an HPP session of a payment session last updated at `payment_updated_at` expires: an
/// hour before the payment session does.
#[must_use]
pub fn hpp_expires_at(payment_updated_at: Timestamp) -> Timestamp {
    payment_updated_at
        .saturating_add(PAYMENT_SESSION_LIFETIME.saturating_sub(HPP_ENDS_BEFORE_PAYMENT))
}

/// The payment session a history without one of its own stands for (the fleet's,
/// [`drive_integration`](crate::integration::drive_integration)'s): its only HPP session is
/// that history's, and it expires an hour after it, as Klarna's rule has it. The simulator's
/// HPP session lives 48 h from its creation, so this payment session was last updated an hour
/// after that: no token outlives it (an authorization comes before `expires_at`, and its hour
/// ends by then).
#[must_use]
pub fn payment_of(history: &History, now: Timestamp) -> PaymentSession {
    PaymentSession {
        expired: now >= history.expires_at.saturating_add(HPP_ENDS_BEFORE_PAYMENT),
        ordered_elsewhere: false,
    }
}

/// What Klarna answers a create-order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderAnswer {
    /// 200: the order was created.
    Created,
    /// 404: the token is not this session's, not issued yet, past its hour, or cancelled, or
    /// the payment session expired.
    InvalidToken,
    /// 400: the payment session has its order already (a successful order closes it).
    PaymentSessionClosed,
}

/// What Klarna knows of the payment session an HPP session pays, at the call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaymentSession {
    /// It expired (48 h after its last update): its tokens create no order.
    pub expired: bool,
    /// Another HPP session of it has the order (the merchant's, or Klarna's own).
    pub ordered_elsewhere: bool,
}

/// The money calls made with one HPP session's token, as Klarna recorded them. The counters
/// saturate at 255: a judge needs only "none, one, more".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Money {
    /// Orders created (at most one: a successful order closes the payment session).
    pub orders_created: u8,
    /// When the order was created.
    pub ordered_at: Option<Timestamp>,
    /// Create-order calls refused because this session's order exists already (the
    /// merchant's, or the one Klarna placed): the money was asked for twice.
    pub refused_again: u8,
    /// Create-order calls refused because another HPP session of the payment session has the
    /// order: no money moved, and nothing is wrong.
    pub refused_closed: u8,
    /// Create-order calls with this session's token refused as invalid (not issued yet, past
    /// its hour, cancelled, or the payment session expired).
    pub refused_invalid: u8,
    /// Create-order calls made for this session with a token that is not its own (a mixed-up
    /// session), refused as invalid.
    pub refused_foreign: u8,
    /// The merchant cancelled the authorization (it decided not to fulfil).
    pub authorization_cancelled: bool,
}

impl Money {
    /// Whether this HPP session has the payment session's order at `now`: one the merchant
    /// created with its token, or one Klarna placed itself (the session `COMPLETED` with an
    /// `order_id`).
    #[must_use]
    pub fn ordered(&self, history: &History, now: Timestamp) -> bool {
        self.orders_created > 0 || klarnas_order(history, now)
    }

    /// Create-order with `token` at `now`, for the session of `history`, as Klarna answers it.
    ///
    /// `payment` is what Klarna knows of the payment session at the call: for a history that
    /// stands alone (a fleet's, a [`drive_integration`](crate::integration::drive_integration)
    /// run's), [`payment_of`]`(history, now)`; the double works it out from its payment
    /// sessions. The token's hour runs from the history's `COMPLETED` change
    /// ([`token_accepted`]).
    pub fn create_order(
        &mut self,
        history: &History,
        token: &str,
        now: Timestamp,
        payment: PaymentSession,
    ) -> OrderAnswer {
        let own_token = history
            .completion
            .authorization_token
            .as_ref()
            .is_some_and(|t| t.as_str() == token);
        if !own_token {
            self.refused_foreign = self.refused_foreign.saturating_add(1);
            OrderAnswer::InvalidToken
        } else if self.authorization_cancelled || payment.expired || !token_accepted(history, now) {
            self.refused_invalid = self.refused_invalid.saturating_add(1);
            OrderAnswer::InvalidToken
        } else if self.ordered(history, now) {
            self.refused_again = self.refused_again.saturating_add(1);
            OrderAnswer::PaymentSessionClosed
        } else if payment.ordered_elsewhere {
            self.refused_closed = self.refused_closed.saturating_add(1);
            OrderAnswer::PaymentSessionClosed
        } else {
            self.orders_created = self.orders_created.saturating_add(1);
            self.ordered_at.get_or_insert(now);
            OrderAnswer::Created
        }
    }

    /// The merchant cancels the authorization at `now`
    /// (`DELETE /payments/v1/authorizations/{token}`): `true` (204) for a token that could
    /// still create an order; `false` (404) for one dead, used, or cancelled already.
    pub fn cancel_authorization(
        &mut self,
        history: &History,
        now: Timestamp,
        payment: PaymentSession,
    ) -> bool {
        if payment.ordered_elsewhere
            || payment.expired
            || self.ordered(history, now)
            || self.authorization_cancelled
            || !token_accepted(history, now)
        {
            return false;
        }
        self.authorization_cancelled = true;
        true
    }

    /// Create-order calls made for this session, whatever token and answer they had.
    #[must_use]
    pub const fn orders_asked(&self) -> u32 {
        self.orders_created as u32
            + self.refused_again as u32
            + self.refused_closed as u32
            + self.refused_invalid as u32
            + self.refused_foreign as u32
    }
}

/// Whether Klarna placed the order itself by `now` (the session completed with an `order_id`).
#[must_use]
pub fn klarnas_order(history: &History, now: Timestamp) -> bool {
    history.completion.order_id.is_some() && history.status_at(now) == Status::Completed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimConfig, Simulator};
    use core::time::Duration;

    /// The first history with a token and no order of Klarna's, and when it was authorized.
    fn to_order() -> (History, Timestamp, crate::Text) {
        let simulator = Simulator::new(SimConfig::DEFAULT, 8);
        (0..10_000)
            .map(|i| simulator.scenario(i).history)
            .find_map(|h| {
                let at = h.ending().filter(|e| e.status == Status::Completed)?.at;
                let token = h.completion.authorization_token.clone()?;
                h.completion.order_id.is_none().then_some((h, at, token))
            })
            .unwrap()
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn one_order_within_the_tokens_hour_then_refusals() {
        let (h, at, token) = to_order();
        let live = PaymentSession::default();
        let mut m = Money::default();
        assert_eq!(
            m.create_order(&h, "another", at, live),
            OrderAnswer::InvalidToken
        );
        let before = Timestamp::from_unix(at.unix_seconds() - 1, 0).unwrap();
        assert_eq!(
            m.create_order(&h, &token, before, live),
            OrderAnswer::InvalidToken,
            "not issued yet"
        );
        let closed = PaymentSession {
            ordered_elsewhere: true,
            ..live
        };
        assert_eq!(
            m.create_order(&h, &token, at, closed),
            OrderAnswer::PaymentSessionClosed
        );
        let expired = PaymentSession {
            expired: true,
            ..live
        };
        assert_eq!(
            m.create_order(&h, &token, at, expired),
            OrderAnswer::InvalidToken
        );
        let then = at.saturating_add(MINUTE);
        assert_eq!(m.create_order(&h, &token, then, live), OrderAnswer::Created);
        assert_eq!(
            m.create_order(&h, &token, then, live),
            OrderAnswer::PaymentSessionClosed
        );
        assert_eq!(
            (m.orders_created, m.refused_again, m.refused_closed),
            (1, 1, 1)
        );
        assert_eq!(
            (m.refused_foreign, m.refused_invalid, m.ordered_at),
            (1, 2, Some(then))
        );
        assert_eq!(m.orders_asked(), 6);
        assert!(m.ordered(&h, then));
        assert!(!m.cancel_authorization(&h, then, live), "used");
    }

    #[test]
    fn a_payment_session_lives_48_hours_and_its_hpp_sessions_an_hour_less() {
        let (h, at, _) = to_order();
        let hours = |to: Timestamp| to.duration_since(at).map(|d| d.as_secs() / 3_600);
        assert_eq!(hours(payment_expires_at(at)), Some(48));
        assert_eq!(hours(hpp_expires_at(at)), Some(47));
        // A history's own payment session ends an hour after the HPP session.
        let end = h.expires_at.saturating_add(HPP_ENDS_BEFORE_PAYMENT);
        let last = Timestamp::from_unix(end.unix_seconds() - 1, 0).unwrap();
        assert!(!payment_of(&h, last).expired);
        assert!(payment_of(&h, end).expired);
        assert!(!payment_of(&h, end).ordered_elsewhere);
    }

    /// A session Klarna placed the order for has its order: the merchant's create-order with
    /// its token asks for the money twice.
    #[test]
    fn klarnas_own_order_is_the_sessions_order() {
        let simulator = Simulator::new(SimConfig::DEFAULT, 8);
        let (h, at, token) = (0..10_000)
            .map(|i| simulator.scenario(i).history)
            .find_map(|h| {
                let at = h.ending().filter(|e| e.status == Status::Completed)?.at;
                let token = h.completion.authorization_token.clone()?;
                h.completion.order_id.is_some().then_some((h, at, token))
            })
            .unwrap();
        let before = Timestamp::from_unix(at.unix_seconds() - 1, 0).unwrap();
        assert!(!klarnas_order(&h, before));
        assert!(klarnas_order(&h, at));
        let mut m = Money::default();
        assert!(m.ordered(&h, at));
        let live = PaymentSession::default();
        assert_eq!(
            m.create_order(&h, &token, at, live),
            OrderAnswer::PaymentSessionClosed
        );
        assert_eq!((m.orders_created, m.refused_again), (0, 1));
    }

    #[test]
    fn the_hour_ends_at_exactly_sixty_minutes() {
        let (h, at, token) = to_order();
        let live = PaymentSession::default();
        let mut m = Money::default();
        let end = at.saturating_add(60 * MINUTE);
        assert_eq!(
            m.create_order(&h, &token, end, live),
            OrderAnswer::InvalidToken
        );
        let last = Timestamp::from_unix(end.unix_seconds() - 1, 999_999_999).unwrap();
        assert_eq!(m.create_order(&h, &token, last, live), OrderAnswer::Created);
    }

    #[test]
    fn a_cancelled_authorization_creates_no_order() {
        let (h, at, token) = to_order();
        let live = PaymentSession::default();
        let mut m = Money::default();
        let closed = PaymentSession {
            ordered_elsewhere: true,
            ..live
        };
        assert!(!m.cancel_authorization(&h, at, closed), "paid elsewhere");
        assert!(
            !m.cancel_authorization(&h, at.saturating_add(60 * MINUTE), live),
            "dead"
        );
        assert!(m.cancel_authorization(&h, at, live));
        assert!(!m.cancel_authorization(&h, at, live), "once");
        assert_eq!(
            m.create_order(&h, &token, at, live),
            OrderAnswer::InvalidToken
        );
        assert!(!m.ordered(&h, at));
    }
}
