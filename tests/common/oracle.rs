//! An oracle for the lifecycle, written from the spec's prose (`hpp-lifecycle.md` §1–§2) as
//! rules, independently of the crate's `EDGES` list. Shared by the tests and the fuzz targets.

use hpp_session::{Event, Status};

/// The spec's final statuses: "COMPLETED, CANCELLED, DISABLED | anything | rejected".
pub fn is_final(s: Status) -> bool {
    matches!(s, Status::Completed | Status::Cancelled | Status::Disabled)
}

/// "FAILED, BACK, ERROR keep the session open" plus TIMEOUT (ours): the consumer may come back.
pub fn can_come_back(s: Status) -> bool {
    matches!(
        s,
        Status::Failed | Status::Back | Status::Error | Status::Timeout
    )
}

/// Where `event` takes a session in `from`, by the spec's rules; `None` when rejected.
pub fn next(from: Status, event: Event) -> Option<Status> {
    if is_final(from) {
        return None;
    }
    // "The merchant's DELETE turns any non-completed session into DISABLED."
    if event == Event::Disable {
        return Some(Status::Disabled);
    }
    // "Opens the page": the first time from WAITING, or again from a status that may come back.
    if event == Event::Open {
        return (from == Status::Waiting || can_come_back(from)).then_some(Status::InProgress);
    }
    // What the consumer does on the page; MANUAL_ID_CHECK allows the same outcomes except Back
    // and a second identity check (ours).
    let on_page = from == Status::InProgress;
    let checking = from == Status::ManualIdCheck;
    match event {
        Event::Authorize if on_page || checking => Some(Status::Completed),
        Event::Decline if on_page || checking => Some(Status::Failed),
        Event::Cancel if on_page || checking => Some(Status::Cancelled),
        Event::PaymentError if on_page || checking => Some(Status::Error),
        Event::InactivityTimeout if on_page || checking => Some(Status::Timeout),
        Event::GoBack if on_page => Some(Status::Back),
        Event::RequestIdCheck if on_page => Some(Status::ManualIdCheck),
        _ => None,
    }
}

/// Statuses reachable from `from` in one or more steps, by breadth-first search over [`next`].
pub fn reachable(from: Status) -> [bool; 10] {
    let mut seen = [false; 10];
    let mut frontier = vec![from];
    while let Some(s) = frontier.pop() {
        for e in Event::ALL {
            if let Some(t) = next(s, e) {
                let i = Status::ALL.iter().position(|&x| x == t).unwrap();
                if !seen[i] {
                    seen[i] = true;
                    frontier.push(t);
                }
            }
        }
    }
    seen
}
