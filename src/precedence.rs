//! The order on snapshots, and when two status changes cannot belong to one history.

use crate::completion::Completion;
use crate::outcome::ConflictKind;
use crate::snapshot::Change;
use crate::status::Status;
use crate::table;
use crate::timestamp::Timestamp;

/// How much a status outranks others whatever the times: an authorization above the other final
/// statuses, final statuses above the rest. Money is never dropped for a later non-final status.
pub(crate) const fn rank(status: Status) -> u8 {
    match status {
        Status::Completed => 2,
        Status::Cancelled | Status::Disabled => 1,
        _ => 0,
    }
}

/// The key of a status change: rank, then `updated_at`, then the status as a tie-break.
pub(crate) type ChangeKey = (u8, Timestamp, Status);

/// The key of `status` changed at `updated_at`.
pub(crate) const fn change_key(status: Status, updated_at: Timestamp) -> ChangeKey {
    (rank(status), updated_at, status)
}

/// Where a change stands in time for ordering: its `updated_at`, or the earliest instant for an
/// undated one (a `COMPLETED` whose body did not say when, or the `DISABLED` a disable's 204
/// shows: their rank already puts them above every status that is not final).
pub(crate) fn sort_time(s: &Change) -> Timestamp {
    s.updated_at().unwrap_or(Timestamp::MIN)
}

/// The precedence of a change: its change key, then the completion data as a deterministic
/// tie-break. A total order on changes. (Two snapshots of one change that differ only in
/// `expires_at` are the same change: the tracker keeps the expiry apart.)
pub(crate) fn precedence(s: &Change) -> (ChangeKey, Option<&Completion>) {
    (change_key(s.status(), sort_time(s)), s.completion())
}

/// Two different status changes of one history, the later of higher precedence.
#[derive(Clone, Copy)]
pub(crate) struct Pair {
    /// The status and `updated_at` of the change of lower precedence.
    pub earlier: (Status, Option<Timestamp>),
    /// The status and `updated_at` of the change of higher precedence.
    pub later: (Status, Option<Timestamp>),
}

/// Why `pair.later` cannot follow `pair.earlier` in one session's history, if it cannot. The two
/// must be different changes.
pub(crate) fn contradiction(pair: Pair) -> Option<ConflictKind> {
    let ((a, a_at), (b, b_at)) = (pair.earlier, pair.later);
    if a == Status::Completed && b == Status::Completed {
        return Some(ConflictKind::TwoCompletions);
    }
    if a.is_final() && b.is_final() {
        // The `DISABLED` a disable's 204 shows is undated: it says the session ended unpaid by
        // the time Klarna answered, not which way. A cancel is not a contradiction of it.
        let unpaid = |s: Status| matches!(s, Status::Cancelled | Status::Disabled);
        let undated_disable =
            (a == Status::Disabled && a_at.is_none()) || (b == Status::Disabled && b_at.is_none());
        if undated_disable && unpaid(a) && unpaid(b) {
            return None;
        }
        return Some(ConflictKind::TwoFinals);
    }
    // An undated change (a `COMPLETED` body without a readable `updated_at`, a disable's 204)
    // cannot be placed in time, so only the table can rule it out.
    let stamped_before = matches!((a_at, b_at), (Some(a_at), Some(b_at)) if b_at < a_at);
    if stamped_before || !table::is_reachable(a, b) {
        return Some(ConflictKind::CannotFollow);
    }
    None
}

/// [`contradiction`] between two changes, `later` of higher precedence; `None` for the same
/// change.
pub(crate) fn snapshots_contradict(earlier: &Change, later: &Change) -> Option<ConflictKind> {
    if earlier.same_change(later) {
        return None;
    }
    contradiction(Pair {
        earlier: (earlier.status(), earlier.updated_at()),
        later: (later.status(), later.updated_at()),
    })
}
