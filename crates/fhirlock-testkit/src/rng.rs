//! A small deterministic generator for seeded fault and fuzz loops.

use std::time::Duration;

/// xorshift64, seeded from `FHIRLOCK_SEED` or the clock. The seed is printed, so a failing run
/// can be replayed.
pub struct Rng(u64);

impl Rng {
    /// Prints `<what>: seed <seed> (FHIRLOCK_SEED=<seed> replays it)`.
    pub fn seeded(what: &str) -> Rng {
        let seed = std::env::var("FHIRLOCK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("{what}: seed {seed} (FHIRLOCK_SEED={seed} replays it)");
        Rng(seed)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// In `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    /// In `lo..hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}
