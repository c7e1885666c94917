//! The simulator's randomness: `SplitMix64`, integer-only, so a seed gives the same numbers on
//! every platform.

use core::fmt::Write as _;

use super::Text;

/// A `SplitMix64` generator (Steele, Lea and Flood): small, fast, and the same everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for item `index` of a run seeded with `seed`: each item's stream is fixed by
    /// the pair alone, so one session can be simulated again without the others.
    #[must_use]
    pub fn derive(seed: u64, index: u64) -> Self {
        let mut mixer = Self(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Self(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub const fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub const fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }

    /// True with probability `permille` / 1000 (always from 1000 up).
    pub const fn chance(&mut self, permille: u16) -> bool {
        self.next_u64() % 1000 < permille as u64
    }

    /// One of `items`, or `None` when it is empty.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        let len = u64::try_from(items.len()).ok()?;
        let i = usize::try_from(self.range(0, len)).ok()?;
        items.get(i).copied()
    }

    /// A UUID-shaped identifier (lower-case hex, 8-4-4-4-12), as Klarna's examples show.
    pub fn uuid(&mut self) -> Text {
        let (a, b) = (self.next_u64(), self.next_u64());
        let mut text = Text::new();
        // 36 characters always fit a `Text`.
        let _ = write!(
            text,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        );
        text
    }

    /// A Klarna-reference-shaped text: eight upper-case hex digits.
    pub fn reference(&mut self) -> Text {
        let mut text = Text::new();
        let _ = write!(text, "{:08X}", self.next_u64() >> 32);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs for seed 0 published with the algorithm (Vigna's splitmix64.c).
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn ranges_chances_and_ids_have_their_shapes() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            assert!((3..9).contains(&rng.range(3, 9)));
        }
        assert_eq!(rng.range(5, 5), 5);
        assert!((0..100).all(|_| !rng.chance(0)));
        assert!((0..100).all(|_| rng.chance(1000)));
        let hits = (0..10_000).filter(|_| rng.chance(250)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        let id = rng.uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(rng.reference().len(), 8);
        assert_eq!(rng.pick::<u8>(&[]), None);
        assert_eq!(rng.pick(&[4]), Some(4));
        assert_ne!(Rng::derive(1, 0), Rng::derive(1, 1));
        assert_ne!(Rng::derive(1, 0), Rng::derive(2, 0));
    }
}
