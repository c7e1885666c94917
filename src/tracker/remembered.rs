//! The callback `event_id`s a tracker remembers, as 32-bit hashes in a ring.

use core::hash::Hasher as _;

/// How many recent callback `event_id`s a tracker remembers (as 32-bit hashes) to report
/// re-deliveries as duplicates. Correctness never depends on it: a forgotten or colliding id only
/// changes how an observation that changes nothing is labelled (`Stale` or `Duplicate`).
pub const REMEMBERED_EVENTS: usize = 16;

/// [`REMEMBERED_EVENTS`] as the ring's counters count.
const RING: u8 = {
    assert!(REMEMBERED_EVENTS <= u8::MAX as usize);
    #[expect(clippy::cast_possible_truncation, reason = "checked just above")]
    let ring = REMEMBERED_EVENTS as u8;
    ring
};

/// The hashes of the last [`REMEMBERED_EVENTS`] event ids that changed a tracker: a ring, the
/// oldest overwritten first. (A `heapless::Deque` would take 24 bytes more for its indices.)
/// Two rings are equal when they remember the same hashes in the same order, wherever the ring
/// starts.
#[derive(Clone, Debug)]
pub(crate) struct Remembered {
    hashes: [u32; REMEMBERED_EVENTS],
    /// How many are kept.
    len: u8,
    /// Where the next one goes.
    next: u8,
}

/// The 32-bit FNV-1a hash of a string: what the ring keeps of an event id, and the session's
/// spread of reads.
pub(crate) fn hash(text: &str) -> u32 {
    let mut h = hash32::FnvHasher::default();
    h.write(text.as_bytes());
    hash32::Hasher::finish32(&h)
}

impl PartialEq for Remembered {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.oldest_first().eq(other.oldest_first())
    }
}

impl Eq for Remembered {}

impl Remembered {
    /// None remembered.
    pub(crate) const EMPTY: Self = Self {
        hashes: [0; REMEMBERED_EVENTS],
        len: 0,
        next: 0,
    };

    /// Whether `h` is remembered.
    pub(crate) fn contains(&self, h: u32) -> bool {
        self.oldest_first().any(|e| e == h)
    }

    /// Remembers `h`, forgetting the oldest when full.
    pub(crate) fn push(&mut self, h: u32) {
        if let Some(slot) = self.hashes.get_mut(usize::from(self.next)) {
            *slot = h;
        }
        self.next = (self.next + 1) % RING;
        self.len = (self.len + 1).min(RING);
    }

    /// The remembered hashes, oldest first.
    pub(crate) fn oldest_first(&self) -> impl Iterator<Item = u32> + '_ {
        let (len, next) = (usize::from(self.len), usize::from(self.next));
        let start = if len < REMEMBERED_EVENTS { 0 } else { next };
        self.hashes.iter().cycle().skip(start).take(len).copied()
    }

    /// The ring holding `hashes`, oldest first; `None` when there are more than it holds.
    #[cfg(any(feature = "serde", test))]
    pub(crate) fn of(hashes: impl IntoIterator<Item = u32>) -> Option<Self> {
        let mut ring = Self::EMPTY;
        for (i, h) in hashes.into_iter().enumerate() {
            if i >= REMEMBERED_EVENTS {
                return None;
            }
            ring.push(h);
        }
        Some(ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_forgets_the_oldest_and_lists_oldest_first() {
        let mut ring = Remembered::EMPTY;
        assert_eq!(ring.oldest_first().count(), 0);
        for h in 1..=3 {
            ring.push(h);
        }
        assert_eq!(
            ring.oldest_first().collect::<heapless::Vec<u32, 16>>(),
            [1, 2, 3]
        );
        for h in 4..=20 {
            ring.push(h);
        }
        let kept: heapless::Vec<u32, 16> = ring.oldest_first().collect();
        assert_eq!(
            kept.as_slice(),
            (5..=20).collect::<heapless::Vec<u32, 16>>().as_slice()
        );
        assert!(ring.contains(5) && ring.contains(20) && !ring.contains(4));
        // The same hashes, oldest first, make an equal ring, wherever it starts.
        let again = Remembered::of(kept.iter().copied()).unwrap();
        assert_eq!(again, ring);
        assert_ne!(Remembered::of(1..=16).unwrap(), ring);
        assert_eq!(Remembered::of(0..17), None);
    }
}
