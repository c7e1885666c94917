//! The whole public API runs without touching the heap.
//!
//! A counting global allocator counts per thread (so the test harness's other threads don't
//! count); inputs are built outside the measured closures.

use core::fmt::Write as _;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use hpp_session::diagram::Mermaid;
use hpp_session::table;
use hpp_session::{Completion, Event, Session, SessionId, Status, Timestamp};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The default policy, held by the caller.
#[cfg(feature = "serde")]
const CFG: hpp_session::TrackerConfig = hpp_session::TrackerConfig::DEFAULT;

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn the_counter_sees_an_allocation() {
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 16]))) >= 1);
    assert!(allocations_in(|| drop(std::hint::black_box(format!("{}", Status::Back)))) >= 1);
}

#[test]
fn parsing_formatting_and_the_table_do_not_allocate() {
    let long = "X".repeat(1_000);
    let mut text = heapless::String::<4096>::new();
    let n = allocations_in(|| {
        for s in Status::ALL {
            let parsed: Status = s.as_str().parse().unwrap();
            write!(text, "{parsed} {}", s.is_final()).unwrap();
            text.clear();
        }
        let err = long.parse::<Status>().unwrap_err();
        write!(text, "{err}").unwrap();
        text.clear();
        let t = Timestamp::parse("2019-05-13T16:54:04.675+02:00").unwrap();
        write!(text, "{t}").unwrap();
        text.clear();
        let err = Timestamp::parse("2019-02-29T00:00:00Z").unwrap_err();
        write!(text, "{err}").unwrap();
        text.clear();
        let _ = SessionId::new(&long).unwrap_err();
        for from in Status::ALL {
            for e in Event::ALL {
                std::hint::black_box(table::next(from, e));
            }
            for to in Status::ALL {
                std::hint::black_box(table::is_reachable(from, to));
            }
        }
        std::hint::black_box(table::edges().count());
        write!(text, "{Mermaid}").unwrap();
    });
    assert_eq!(n, 0);
    assert!(text.contains("stateDiagram-v2"), "the work was done");
}

#[test]
fn a_session_journey_does_not_allocate() {
    let t0 = Timestamp::parse("2019-05-13T14:52:57.540Z").unwrap();
    let mut msg = heapless::String::<256>::new();
    let mut final_status = Status::Waiting;
    let n = allocations_in(|| {
        let mut s = Session::new(t0);
        for e in [
            Event::Open,
            Event::Decline,
            Event::Open,
            Event::GoBack,
            Event::Open,
        ] {
            s.apply(e, t0).unwrap();
        }
        let err = s.apply(Event::Open, t0).unwrap_err();
        write!(msg, "{err}").unwrap();
        let c = Completion::authorized("a1a8f727-2756-6058-bd3c-40069be0994b").unwrap();
        s.authorize(&c, t0).unwrap();
        let copy = Session::from_parts(s.status(), s.changed_at(), s.completion().cloned(), 2);
        final_status = copy.unwrap().status();
    });
    assert_eq!(n, 0);
    assert_eq!(final_status, Status::Completed);
    assert!(msg.contains("not allowed"));
}

#[cfg(feature = "serde")]
#[test]
fn serde_to_a_fixed_buffer_does_not_allocate() {
    let t0 = Timestamp::parse("2019-05-13T14:52:57.540Z").unwrap();
    let mut s = Session::new(t0);
    s.apply(Event::Open, t0).unwrap();
    s.authorize(
        &Completion::order_placed("93d644a2", "X438HG0Q").unwrap(),
        t0,
    )
    .unwrap();
    let mut buf = [0u8; 1024];
    let mut buf2 = [0u8; 1024];
    let mut back = None;
    let mut back2 = None;
    let n = allocations_in(|| {
        let used = serde_json_core::to_slice(&s, &mut buf).unwrap();
        back = Some(
            serde_json_core::from_slice::<Session>(&buf[..used])
                .unwrap()
                .0,
        );
        // serde_json (std) too: writing to a slice and reading borrowed input stay off the heap.
        let mut out = &mut buf2[..];
        serde_json::to_writer(&mut out, &s).unwrap();
        let used = 1024 - out.len();
        back2 = Some(serde_json::from_slice::<Session>(&buf2[..used]).unwrap());
    });
    assert_eq!(n, 0);
    assert_eq!(back.as_ref(), Some(&s));
    assert_eq!(back2.as_ref(), Some(&s));
}

#[cfg(feature = "serde")]
#[test]
fn parsing_borrowed_bodies_and_observing_do_not_allocate() {
    use hpp_session::wire::{CallbackBody, SessionBody};
    use hpp_session::{Action, Tracker};

    let callback = br#"{"event_id":"27ba32b0-644b-4b22-94a9-dac503bcae18","session":{"session_id":"39a1c773-bafd-754d-af1f-b30c592f1267","status":"COMPLETED","authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b","updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z"}}"#;
    let read = br#"{"session_id":"39a1c773-bafd-754d-af1f-b30c592f1267","status":"COMPLETED","authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b","updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z","customer":{"x":[1,{"y":null}]}}"#;
    let now = Timestamp::parse("2019-05-13T14:54:05Z").unwrap();
    let later = Timestamp::parse("2019-05-16T00:00:00Z").unwrap();
    let mut tracker = Tracker::default();
    let mut placed = 0;
    let mut text = heapless::String::<512>::new();
    let mut json = [0u8; 2048];
    let n = allocations_in(|| {
        // serde_json (std) and serde-json-core (no_std) both parse into borrowed types. The
        // nested unknown `customer` object is in the serde-json-core input only: serde_json
        // allocates scratch space of its own to skip nested unknown values (measured here).
        let body: CallbackBody<'_> = serde_json::from_slice(callback).unwrap();
        let snapshot = body.session.snapshot().unwrap();
        let report = tracker
            .observe_callback(&CFG, body.event_id(), &snapshot, now)
            .unwrap();
        write!(text, "{}", report.outcome()).unwrap();
        let (body, _) = serde_json_core::from_slice::<SessionBody<'_>>(read).unwrap();
        let snapshot = body.snapshot().unwrap();
        let report = tracker.observe_read(&CFG, &snapshot, now).unwrap();
        write!(text, " {}", report.outcome()).unwrap();
        // What it owes, with its data, until reported done.
        let id = hpp_session::SessionId::new("39a1c773-bafd-754d-af1f-b30c592f1267").unwrap();
        while let Some(action) = tracker.next_action() {
            write!(text, " {action}").unwrap();
            placed += usize::from(matches!(action, Action::PlaceOrder { .. }));
            tracker.done(action.id(&id)).unwrap();
        }
        std::hint::black_box(tracker.next_read(&CFG, now));
        let _ = tracker.observe_not_found(later).unwrap();
        let used = serde_json_core::to_slice(&tracker, &mut json).unwrap();
        let back: Tracker = serde_json_core::from_slice(&json[..used]).unwrap().0;
        assert!(back == tracker);
    });
    assert_eq!(n, 0);
    assert_eq!(placed, 1, "the work was done: {text}");
}

#[cfg(feature = "serde")]
#[test]
fn hints_claims_and_every_completion_shape_do_not_allocate() {
    use hpp_session::wire::{CallbackBody, SessionBody};
    use hpp_session::{Action, Tracker};

    let forged = br#"{"event_id":"forged-1","session":{"status":"COMPLETED","authorization_token":"ffffffff","updated_at":"2019-05-13T23:59:59.000Z"}}"#;
    let claim = br#"{"event_id":"real-1","session":{"status":"CANCELLED","updated_at":"2019-05-13T14:54:04.675Z"}}"#;
    let in_progress = br#"{"status":"IN_PROGRESS","updated_at":"2019-05-13T14:52:57.540Z","expires_at":"2019-05-15T13:51:43.507Z"}"#;
    // The API reference's sample: token, order id and reference at once.
    let all_three = br#"{"session_id":"a15b228c-02ad-11e9-8eb2-f2801f1b9fd1","status":"COMPLETED","authorization_token":"70850a20-a2a0-5c70-810c-096fa6f850bb","order_id":"93d644a2-43f3-11e9-b210-d663bd873d93","klarna_reference":"ffc25786","updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z"}"#;
    let nothing = br#"{"status":"COMPLETED","updated_at":"2019-05-13T14:54:04.675Z"}"#;
    let now = Timestamp::parse("2019-05-13T14:54:05Z").unwrap();
    let mut paid = Tracker::default();
    let mut review = Tracker::default();
    let mut text = heapless::String::<1024>::new();
    let mut json = [0u8; 2048];
    let mut kinds = heapless::Vec::<&str, 8>::new();
    let n = allocations_in(|| {
        let body: CallbackBody<'_> = serde_json::from_slice(forged).unwrap();
        let err = paid
            .observe_callback(
                &CFG,
                body.event_id(),
                &body.session.snapshot().unwrap(),
                now,
            )
            .unwrap_err();
        write!(text, "{err}").unwrap();
        let body: SessionBody<'_> = serde_json::from_slice(in_progress).unwrap();
        let _ = paid
            .observe_read(&CFG, &body.snapshot().unwrap(), now)
            .unwrap();
        let body: CallbackBody<'_> = serde_json::from_slice(claim).unwrap();
        let report = paid
            .observe_callback(
                &CFG,
                body.event_id(),
                &body.session.snapshot().unwrap(),
                now,
            )
            .unwrap();
        write!(text, " {}", report.outcome()).unwrap();
        if let Some(claim) = paid.claim() {
            write!(text, " {claim}").unwrap();
        }
        std::hint::black_box(paid.next_read(&CFG, now));
        // The schedule's inputs: a read handed out, it failed (429 with its reset), a redirect,
        // a due read, a disable's answer.
        let soon = now.saturating_add(core::time::Duration::from_secs(10));
        let started = paid.start_read(&CFG, soon);
        write!(text, " {}", started.unwrap().urgency).unwrap();
        paid.observe_read_failure(
            hpp_session::ReadFailure::RateLimited {
                reset: Some(core::time::Duration::from_secs(1)),
            },
            now,
        );
        write!(text, " {}", paid.next_read(&CFG, now).unwrap().urgency).unwrap();
        let mut disabled = Tracker::default();
        let id = hpp_session::SessionId::new("any").unwrap();
        let answer = disabled
            .observe_disable_answer(&id, hpp_session::DisableAnswer::Disabled, now)
            .unwrap();
        write!(text, " {}", answer.outcome()).unwrap();
        let redirect = paid
            .observe_redirect(&id, hpp_session::Redirect::Success, now)
            .unwrap();
        write!(text, " {}", redirect.outcome()).unwrap();
        let used = serde_json_core::to_slice(&paid, &mut json).unwrap();
        let back: Tracker = serde_json_core::from_slice(&json[..used]).unwrap().0;
        assert!(back == paid);
        for (tracker, body) in [(&mut paid, &all_three[..]), (&mut review, &nothing[..])] {
            let body: SessionBody<'_> = serde_json::from_slice(body).unwrap();
            let report = tracker
                .observe_read(&CFG, &body.snapshot().unwrap(), now)
                .unwrap();
            for kind in report.newly_owed().iter() {
                let action = tracker.action(kind).unwrap();
                write!(text, " {action}").unwrap();
                kinds.push(action.kind().as_str()).unwrap();
            }
        }
        let used = serde_json_core::to_slice(&review, &mut json).unwrap();
        let back: Tracker = serde_json_core::from_slice(&json[..used]).unwrap().0;
        assert!(back == review);
        let body: SessionBody<'_> = serde_json::from_slice(nothing).unwrap();
        assert!(
            review
                .observe_read(&CFG, &body.snapshot().unwrap(), now)
                .unwrap()
                .newly_owed()
                .is_empty()
        );
        assert!(matches!(
            review.next_action(),
            Some(Action::ReviewCompletion { .. })
        ));
    });
    assert_eq!(n, 0, "{text}");
    assert_eq!(kinds, ["record_order", "review_completion"], "{text}");
    assert!(
        text.contains("refused") && text.contains("claims CANCELLED"),
        "{text}"
    );
}
