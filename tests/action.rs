//! `ActionSet` against `BTreeSet<ActionKind>`, and how actions read.

use std::collections::BTreeSet;

use hpp_session::{
    Action, ActionKind, ActionSet, CompletionProblem, DisableAnswer, KlarnaReference, OrderId,
    ReleaseReason,
};
use proptest::prelude::*;

fn kinds() -> impl Strategy<Value = Vec<ActionKind>> {
    prop::collection::vec(prop::sample::select(ActionKind::ALL.to_vec()), 0..6)
}

fn set(kinds: &[ActionKind]) -> ActionSet {
    kinds.iter().fold(ActionSet::EMPTY, |s, &k| s.with(k))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_096))]

    #[test]
    fn action_sets_behave_like_sets(a in kinds(), b in kinds()) {
        let (sa, sb) = (set(&a), set(&b));
        let (ba, bb): (BTreeSet<_>, BTreeSet<_>) = (a.iter().copied().collect(), b.iter().copied().collect());
        prop_assert_eq!(sa.iter().collect::<BTreeSet<_>>(), ba.clone());
        prop_assert_eq!(sa.union(sb).iter().collect::<BTreeSet<_>>(), &ba | &bb);
        prop_assert_eq!(sa.without(sb).iter().collect::<BTreeSet<_>>(), &ba - &bb);
        prop_assert_eq!(sa.is_empty(), ba.is_empty());
        for k in ActionKind::ALL {
            prop_assert_eq!(sa.contains(k), ba.contains(&k));
        }
        prop_assert_eq!(ActionSet::from_bits(sa.bits()), Some(sa));
        // Listed in report order (written out here), which `Ord` follows.
        const REPORT_ORDER: [ActionKind; 5] = [
            ActionKind::PlaceOrder,
            ActionKind::RecordOrder,
            ActionKind::ReviewCompletion,
            ActionKind::Release,
            ActionKind::Disable,
        ];
        let listed: Vec<_> = sa.iter().collect();
        let expected: Vec<_> = REPORT_ORDER.into_iter().filter(|k| ba.contains(k)).collect();
        prop_assert_eq!(&listed, &expected);
        prop_assert!(listed.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn unknown_bits_are_refused() {
    assert_eq!(ActionSet::from_bits(0b100_0000), None);
    assert_eq!(ActionSet::from_bits(0b1000_0000), None);
    // The bit the read request had before reads left the actions names nothing now.
    assert_eq!(ActionSet::from_bits(0b1000), None);
    assert_eq!(
        ActionSet::from_bits(0b11_0111).map(|s| s.iter().count()),
        Some(5)
    );
    assert_eq!(ActionSet::from_bits(0b11_0111).map(ActionSet::len), Some(5));
}

#[test]
fn actions_read_as_what_to_do() {
    assert_eq!(ReleaseReason::Expired.to_string(), "EXPIRED");
    assert_eq!(ReleaseReason::Cancelled.as_str(), "CANCELLED");
    assert_eq!(
        Action::Release {
            reason: ReleaseReason::Disabled
        }
        .to_string(),
        "release the cart (DISABLED)"
    );
    assert_eq!(
        Action::Disable.to_string(),
        "disable the session, and report Klarna's answer"
    );
    for kind in ActionKind::ALL {
        assert_eq!(ActionKind::from_name(kind.as_str()), Some(kind));
    }
    assert_eq!(ActionKind::from_name("read_session"), None);
    let names: Vec<_> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "place_order",
            "record_order",
            "review_completion",
            "release",
            "disable",
        ]
    );
    let money: Vec<_> = ActionKind::ALL.iter().map(|k| k.is_money()).collect();
    assert_eq!(money, [true, true, true, false, false]);
    let review = Action::ReviewCompletion {
        problem: CompletionProblem::Missing,
    };
    assert_eq!(review.kind(), ActionKind::ReviewCompletion);
    assert_eq!(
        review.to_string(),
        "a person must review this paid session: no authorization_token and no order_id"
    );
    assert_eq!(
        CompletionProblem::ReferenceWithoutOrder.to_string(),
        "a klarna_reference without an order_id"
    );
    let order_id = OrderId::new("93d644a2").unwrap();
    let reference = KlarnaReference::new("X438HG0Q").unwrap();
    let record = |klarna_reference| Action::RecordOrder {
        order_id: order_id.clone(),
        klarna_reference,
    };
    assert_eq!(record(None).to_string(), "record order 93d644a2");
    assert_eq!(
        record(Some(reference.clone())).to_string(),
        "record order 93d644a2 (X438HG0Q)"
    );
}

/// The disable's three answers, as Klarna's codes and as a log line says them.
#[test]
fn disable_answers_are_klarnas_codes() {
    let answers = [
        (DisableAnswer::Disabled, 204, "204: disabled"),
        (
            DisableAnswer::AlreadyFinal,
            400,
            "400: the session is final already",
        ),
        (
            DisableAnswer::NotFound,
            404,
            "404: the session is gone (expired)",
        ),
    ];
    for (answer, code, said) in answers {
        assert_eq!(answer.http_status(), code);
        assert_eq!(answer.to_string(), said);
    }
}
