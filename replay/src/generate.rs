//! A deterministic synthetic log of the kind an integrator receives, for benchmarks and trials:
//! sessions opened, abandoned, retried, paid (every completion shape), cancelled, disabled or
//! expired; callbacks delivered one to three times; reads now and then; a 404 after expiry.
//! The same seed gives the same bytes on every platform.

use std::io::{self, Write};

use hpp_session::Timestamp;

/// Sessions generated together and sorted by arrival; memory stays bounded by one block.
const BLOCK: u64 = 1_000;

/// 2019-05-13T14:51:43.507Z, an instant from Klarna's examples, in milliseconds.
const BASE_MS: i64 = 1_557_759_103_507;

/// `SplitMix64`: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    /// A delay in `lo..hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> i64 {
        i64::try_from(self.range(lo, hi)).unwrap_or(i64::MAX)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }
}

fn time(ms: i64) -> Timestamp {
    let secs = ms.div_euclid(1_000);
    let nanos = u32::try_from(ms.rem_euclid(1_000) * 1_000_000).unwrap_or(0);
    Timestamp::from_unix(secs, nanos).unwrap_or(Timestamp::MAX)
}

/// One session's lines, with when each arrives.
struct Session {
    id: String,
    expires: Timestamp,
    lines: Vec<(i64, String)>,
    /// The session object's fields after the latest change: status, `updated_at`, completion.
    status: &'static str,
    updated_ms: i64,
    completion: String,
}

impl Session {
    fn body(&self) -> String {
        format!(
            r#"{{"session_id":"{}","status":"{}","updated_at":"{}","expires_at":"{}"{}}}"#,
            self.id,
            self.status,
            time(self.updated_ms),
            self.expires,
            self.completion
        )
    }

    /// The consumer (or the merchant) changes the status at `ms`; Klarna calls back 1–3
    /// times a few seconds apart (not for the merchant's disable).
    fn change(&mut self, rng: &mut Rng, status: &'static str, ms: i64, callback: bool) {
        self.status = status;
        self.updated_ms = ms;
        if !callback {
            return;
        }
        let event_id = rng.uuid();
        let mut at = ms + rng.millis(50, 900);
        for _ in 0..rng.range(1, 4) {
            let line = format!(
                r#"{{"at":"{}","callback":{{"event_id":"{event_id}","session":{}}}}}"#,
                time(at),
                self.body()
            );
            self.lines.push((at, line));
            at += rng.millis(3_000, 8_000);
        }
    }

    /// The integrator reads the session at `at`.
    fn read(&mut self, at: i64) {
        let line = format!(r#"{{"at":"{}","read":{}}}"#, time(at), self.body());
        self.lines.push((at, line));
    }
}

fn session(rng: &mut Rng, created_ms: i64) -> Session {
    let mut s = Session {
        id: rng.uuid(),
        expires: time(created_ms + 48 * 3_600_000),
        lines: Vec::new(),
        status: "WAITING",
        updated_ms: created_ms,
        completion: String::new(),
    };
    let mut t = created_ms + rng.millis(200, 2_000);
    s.read(t);
    // The consumer opens the page, perhaps goes back or fails and comes back.
    let mut open = !rng.chance(10);
    if open {
        t += rng.millis(5_000, 120_000);
        s.change(rng, "IN_PROGRESS", t, true);
    }
    let mut retries = 0;
    while open && retries < 2 && rng.chance(30) {
        retries += 1;
        let detour = match rng.range(0, 4) {
            0 => "BACK",
            1 => "FAILED",
            2 => "ERROR",
            _ => "TIMEOUT",
        };
        t += rng.millis(10_000, 90_000);
        s.change(rng, detour, t, true);
        if rng.chance(50) {
            s.read(t + rng.millis(1_000, 10_000));
        }
        if rng.chance(80) {
            t += rng.millis(10_000, 300_000);
            s.change(rng, "IN_PROGRESS", t, true);
        } else {
            open = false;
        }
    }
    if rng.chance(50) {
        s.read(t + rng.millis(1_000, 10_000));
    }
    // How it ends.
    t += rng.millis(20_000, 240_000);
    let ending = rng.range(0, 100);
    let ended = match ending {
        0..60 if open => {
            let token = format!(r#","authorization_token":"{}""#, rng.uuid());
            let order = format!(
                r#","order_id":"{}","klarna_reference":"{:08X}""#,
                rng.uuid(),
                rng.next() >> 32
            );
            s.completion = match rng.range(0, 10) {
                0..7 => token,
                7..9 => order,
                _ => format!("{token}{order}"),
            };
            s.change(rng, "COMPLETED", t, true);
            true
        }
        60..75 if open => {
            s.change(rng, "CANCELLED", t, true);
            true
        }
        75..80 => {
            s.change(rng, "DISABLED", t, false);
            true
        }
        _ => false,
    };
    if ended {
        // The read that confirms the ending (callbacks are unsigned), sometimes a late one too.
        s.read(t + rng.millis(1_000, 5_000));
        if rng.chance(20) {
            s.read(t + rng.millis(60_000, 600_000));
        }
    } else {
        let at = created_ms + 48 * 3_600_000 + rng.millis(1_000, 60_000);
        s.lines.push((
            at,
            format!(
                r#"{{"at":"{}","not_found":true,"session_id":"{}"}}"#,
                time(at),
                s.id
            ),
        ));
    }
    s
}

/// Writes a log of `sessions` sessions made from `seed`, in blocks of interleaved sessions
/// sorted by arrival; returns how many lines it wrote.
///
/// # Errors
/// The writer's.
pub fn generate(out: &mut impl Write, sessions: u64, seed: u64) -> io::Result<u64> {
    let mut rng = Rng(seed);
    let mut written = 0;
    let mut block = Vec::new();
    let mut k = 0;
    while k < sessions {
        block.clear();
        for _ in 0..BLOCK.min(sessions - k) {
            // A new session every half second or so.
            let created = BASE_MS + i64::try_from(k).unwrap_or(i64::MAX / 1_000) * 500;
            block.extend(session(&mut rng, created).lines);
            k += 1;
        }
        block.sort_by_key(|(at, _)| *at);
        for (_, line) in &block {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_lines_parse() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let n = generate(&mut a, 50, 7).unwrap();
        generate(&mut b, 50, 7).unwrap();
        generate(&mut c, 50, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let text = String::from_utf8(a).unwrap();
        assert_eq!(text.lines().count() as u64, n);
        for line in text.lines() {
            let _: serde_json::Value = serde_json::from_str(line).unwrap();
        }
    }
}
