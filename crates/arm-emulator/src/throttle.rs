//! ARM's token-bucket throttling (§5.4), one bucket per (subscription, principal, operation kind).

use crate::config::{Bucket, Throttle};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Read,
    Write,
    Delete,
}

impl Kind {
    pub fn of_method(m: &str) -> Kind {
        match m {
            "GET" | "HEAD" => Kind::Read,
            "DELETE" => Kind::Delete,
            _ => Kind::Write,
        }
    }
    pub fn word(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Delete => "delete",
        }
    }
    pub fn header(self) -> &'static str {
        match self {
            Kind::Read => "x-ms-ratelimit-remaining-subscription-reads",
            Kind::Write => "x-ms-ratelimit-remaining-subscription-writes",
            Kind::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    pub tokens: f64,
    pub at_ms: u64,
}

/// Takes one token. `Ok(remaining)` or `Err(retry_after_seconds)`: the wait until one token exists.
pub fn take(b: &mut BucketState, size: Bucket, now_ms: u64) -> Result<u64, u64> {
    let elapsed = now_ms.saturating_sub(b.at_ms) as f64 / 1000.0;
    b.tokens = (b.tokens + elapsed * size.refill_per_second).min(size.capacity);
    b.at_ms = now_ms;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Ok(b.tokens.floor() as u64)
    } else if size.refill_per_second <= 0.0 {
        Err(3600)
    } else {
        Err(((1.0 - b.tokens) / size.refill_per_second).ceil().max(1.0) as u64)
    }
}

#[derive(Default)]
pub struct Throttler {
    buckets: HashMap<(String, String, Kind), BucketState>,
}

impl Throttler {
    pub fn take(
        &mut self,
        sizes: &Throttle,
        sub: &str,
        principal: &str,
        kind: Kind,
        now_ms: u64,
    ) -> Result<u64, u64> {
        let size = match kind {
            Kind::Read => sizes.reads,
            Kind::Write => sizes.writes,
            Kind::Delete => sizes.deletes,
        };
        let b = self
            .buckets
            .entry((
                sub.to_ascii_lowercase(),
                principal.to_ascii_lowercase(),
                kind,
            ))
            .or_insert(BucketState {
                tokens: size.capacity,
                at_ms: now_ms,
            });
        take(b, size, now_ms)
    }

    pub fn reset(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_drains_refills_and_reports_retry_after() {
        let size = Bucket {
            capacity: 2.0,
            refill_per_second: 0.5,
        };
        let mut b = BucketState {
            tokens: 2.0,
            at_ms: 0,
        };
        // (now_ms, expected)
        let steps = [
            (0, Ok(1)),
            (0, Ok(0)),
            (0, Err(2)),
            (1000, Err(1)),
            (2000, Ok(0)),
            (2000, Err(2)),
        ];
        for (now, want) in steps {
            assert_eq!(take(&mut b, size, now), want, "at {now}");
        }
    }

    #[test]
    fn buckets_are_per_subscription_principal_and_kind() {
        let sizes = Throttle {
            reads: Bucket {
                capacity: 1.0,
                refill_per_second: 1.0,
            },
            writes: Bucket {
                capacity: 1.0,
                refill_per_second: 1.0,
            },
            deletes: Bucket {
                capacity: 1.0,
                refill_per_second: 1.0,
            },
        };
        let mut t = Throttler::default();
        assert!(t.take(&sizes, "s", "p", Kind::Read, 0).is_ok());
        assert!(t.take(&sizes, "s", "p", Kind::Read, 0).is_err());
        assert!(t.take(&sizes, "s", "p", Kind::Write, 0).is_ok());
        assert!(t.take(&sizes, "s", "q", Kind::Read, 0).is_ok());
        assert!(t.take(&sizes, "S2", "p", Kind::Read, 0).is_ok());
    }
}
