//! The replay's sessions: a whole [`Tracker`] while a session is open, its [`Settled`] stand-in
//! (64 bytes, from 1,368) once it settled, so that a replay of millions of sessions holds about a
//! hundred bytes for each that ended. A settled session that reappears is answered by its
//! stand-in, or revived into a tracker when confirmed evidence outranks it
//! ([`Settled::revive`]); either way nothing is asked twice.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
/// The open sessions' map: `hashbrown`'s, with its default hasher (foldhash, seeded per run
/// from addresses and a counter, not from the OS: "minimally" resistant to flooding). A lookup
/// compares the whole id, so a collision costs time, never a wrong session; the tool is run
/// offline on a log, with nothing to tell a writer of ids how its ids hashed. The table is
/// looked up twice a line, where five `SipHash` lookups cost 8 % of a replay. (The settled
/// sessions' keys, which stand for their ids, stay keyed `SipHash`.)
type LiveMap = hashbrown::HashMap<Box<str>, Box<Tracker>>;
use hpp_session::{Claim, SessionId, Settled, Status, Timestamp, Tracker, TrackerConfig};

/// A settled session's key: 128 bits of two independently keyed hashes of its id. Two ids share
/// a key with a chance of about n² / 2¹²⁹ (n sessions): never, in practice, and the keys are
/// random per run, so a log cannot be written to make two collide.
type Key = [u32; 4];

/// Every session of a replay.
pub(crate) struct Sessions {
    live: LiveMap,
    /// Indexes into `settled`, hashed by the key's first half.
    index: HashTable<u32>,
    settled: Vec<(Key, Settled)>,
    /// The ids of settled sessions with a conflict: the summary lists them.
    conflicted: HashMap<Key, Box<str>>,
    hashers: [RandomState; 2],
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            live: LiveMap::default(),
            index: HashTable::new(),
            settled: Vec::new(),
            conflicted: HashMap::new(),
            hashers: [RandomState::new(), RandomState::new()],
        }
    }
}

/// A session as the summary and a rejected line's record see it.
#[derive(Clone, Copy)]
pub(crate) enum View<'s> {
    Live(&'s Tracker),
    Settled(&'s Settled),
}

impl View<'_> {
    pub(crate) fn status(self) -> Option<Status> {
        match self {
            View::Live(t) => t.status(),
            View::Settled(s) => Some(s.status()),
        }
    }

    pub(crate) fn is_expired(self) -> bool {
        match self {
            View::Live(t) => t.is_expired(),
            View::Settled(s) => s.is_expired(),
        }
    }

    pub(crate) fn has_conflict(self) -> bool {
        match self {
            View::Live(t) => t.has_conflict(),
            View::Settled(s) => s.has_conflict(),
        }
    }

    /// A settled session shows no claim: one outranking its final status is a conflict.
    pub(crate) fn claim(self) -> Option<Claim> {
        match self {
            View::Live(t) => t.claim(),
            View::Settled(_) => None,
        }
    }

    pub(crate) fn next_read(self, config: &TrackerConfig, now: Timestamp) -> Option<Timestamp> {
        match self {
            View::Live(t) => t.next_read(config, now).map(|r| r.at),
            View::Settled(_) => None,
        }
    }
}

impl Sessions {
    fn key(&self, id: &str) -> Key {
        let [a, b] = [self.hashers[0].hash_one(id), self.hashers[1].hash_one(id)];
        // Halves of 64-bit hashes: the truncation is the point. (Four `u32`s align to 4 bytes,
        // so an entry is 80 bytes, not 88.)
        #[expect(clippy::cast_possible_truncation, reason = "halves of a hash")]
        let key = [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32];
        key
    }

    /// The hash the index files a key under.
    fn hash(key: Key) -> u64 {
        u64::from(key[0]) | (u64::from(key[1]) << 32)
    }

    /// Where the settled session of `key` is in `settled`.
    fn settled_at(&self, key: Key) -> Option<usize> {
        let settled = &self.settled;
        let found = self.index.find(Self::hash(key), |&i| {
            settled.get(i as usize).is_some_and(|(k, _)| *k == key)
        });
        found.map(|&i| i as usize)
    }

    /// The session `id`, if the replay has seen it.
    pub(crate) fn get(&self, id: &str) -> Option<View<'_>> {
        if let Some(t) = self.live.get(id) {
            return Some(View::Live(t));
        }
        let i = self.settled_at(self.key(id))?;
        self.settled.get(i).map(|(_, s)| View::Settled(s))
    }

    /// Whether session `id` is open (or was revived).
    pub(crate) fn is_live(&self, id: &str) -> bool {
        self.live.contains_key(id)
    }

    /// The live tracker of `id`, if it is open.
    pub(crate) fn live_mut(&mut self, id: &str) -> Option<&mut Tracker> {
        self.live.get_mut(id).map(|t| &mut **t)
    }

    /// The settled stand-in of `id`, if it settled.
    pub(crate) fn settled_mut(&mut self, id: &str) -> Option<&mut Settled> {
        let i = self.settled_at(self.key(id))?;
        self.settled.get_mut(i).map(|(_, s)| s)
    }

    /// The tracker of a new session `id`, bound to it (the replay routes lines by it).
    pub(crate) fn insert(&mut self, id: &str) -> &mut Tracker {
        let tracker = match SessionId::new(id) {
            Ok(session) => Tracker::for_session(session),
            Err(_) => Tracker::new(),
        };
        self.live.entry(id.into()).or_insert(Box::new(tracker))
    }

    /// Makes the settled session `id` a live tracker again ([`Settled::revive`]).
    pub(crate) fn revive(&mut self, id: &str) -> Option<&mut Tracker> {
        let key = self.key(id);
        let i = self.settled_at(key)?;
        let (_, settled) = self.settled.swap_remove(i);
        let hash = Self::hash(key);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j as usize == i) {
            entry.remove();
        }
        // The entry that moved into `i` (the last one) is found by its key and pointed at `i`.
        if let Some((moved, _)) = self.settled.get(i) {
            let last = self.settled.len();
            if let Some(j) = self
                .index
                .find_mut(Self::hash(*moved), |&j| j as usize == last)
            {
                *j = u32::try_from(i).unwrap_or(u32::MAX);
            }
        }
        self.conflicted.remove(&key);
        let tracker = settled.revive(SessionId::new(id).ok());
        Some(self.live.entry(id.into()).or_insert(Box::new(tracker)))
    }

    /// Settles the live session `id`, whose tracker settled into `settled`
    /// ([`Tracker::settled`]): its stand-in replaces it.
    pub(crate) fn settle(&mut self, id: &str, settled: Settled) {
        if self.live.remove(id).is_none() {
            return;
        }
        let key = self.key(id);
        let Ok(i) = u32::try_from(self.settled.len()) else {
            return;
        };
        self.settled.push((key, settled));
        let settled_vec = &self.settled;
        self.index.insert_unique(Self::hash(key), i, |&j| {
            settled_vec
                .get(j as usize)
                .map_or(0, |(k, _)| Self::hash(*k))
        });
        if settled.has_conflict() {
            self.conflicted.insert(key, id.into());
        }
    }

    /// Remembers the id of settled session `id` once it has a conflict, for the summary.
    pub(crate) fn note_conflict(&mut self, id: &str) {
        let key = self.key(id);
        if self.settled_mut(id).is_some_and(|s| s.has_conflict()) {
            self.conflicted.entry(key).or_insert_with(|| id.into());
        }
    }

    /// Every session: live ones with their id, settled ones with theirs only when they have a
    /// conflict (all the summary lists of them).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Option<&str>, View<'_>)> {
        let live = self.live.iter().map(|(id, t)| (Some(&**id), View::Live(t)));
        let settled = self
            .settled
            .iter()
            .map(|(key, s)| (self.conflicted.get(key).map(|id| &**id), View::Settled(s)));
        live.chain(settled)
    }

    /// The live trackers, by session id.
    pub(crate) fn live(&self) -> impl Iterator<Item = (&str, &Tracker)> {
        self.live.iter().map(|(id, t)| (&**id, &**t))
    }
}
