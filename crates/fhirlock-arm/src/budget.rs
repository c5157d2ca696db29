//! The remaining ARM request budget, read from `x-ms-ratelimit-remaining-subscription-*` headers.

use std::time::Instant;

use crate::headers::{Headers, header};

/// The last remaining-request counts ARM reported for one subscription (and this principal).
/// A field is `None` until a response carried it: reads come with GETs, writes with PUT/PATCH/POST,
/// deletes with DELETE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub reads: Option<u32>,
    pub writes: Option<u32>,
    pub deletes: Option<u32>,
    /// When the newest of these values was seen.
    pub observed_at: Instant,
    /// When `writes` was last reported. Only write responses carry it, so a caller that stops
    /// writing sees it age while reads keep `observed_at` fresh.
    pub writes_observed_at: Option<Instant>,
}

/// The rate-limit headers of one response (pure).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub reads: Option<u32>,
    pub writes: Option<u32>,
    pub deletes: Option<u32>,
}

impl RateLimitHeaders {
    pub fn parse(headers: &Headers) -> Self {
        let n = |name: &str| header(headers, name).and_then(|v| v.trim().parse::<u32>().ok());
        RateLimitHeaders {
            reads: n("x-ms-ratelimit-remaining-subscription-reads"),
            writes: n("x-ms-ratelimit-remaining-subscription-writes"),
            deletes: n("x-ms-ratelimit-remaining-subscription-deletes"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.reads.is_none() && self.writes.is_none() && self.deletes.is_none()
    }
}

impl Budget {
    /// Folds one response's headers into the previous budget: values present replace the old
    /// ones, absent ones are kept (a GET says nothing about the write bucket).
    pub fn merge(prev: Option<Budget>, seen: RateLimitHeaders, at: Instant) -> Budget {
        let prev = prev.unwrap_or(Budget {
            reads: None,
            writes: None,
            deletes: None,
            observed_at: at,
            writes_observed_at: None,
        });
        Budget {
            reads: seen.reads.or(prev.reads),
            writes: seen.writes.or(prev.writes),
            deletes: seen.deletes.or(prev.deletes),
            observed_at: at,
            writes_observed_at: if seen.writes.is_some() {
                Some(at)
            } else {
                prev.writes_observed_at
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_table() {
        let cases: &[(&[(&str, &str)], RateLimitHeaders)] = &[
            (&[], RateLimitHeaders::default()),
            (
                &[("x-ms-ratelimit-remaining-subscription-reads", "249")],
                RateLimitHeaders {
                    reads: Some(249),
                    writes: None,
                    deletes: None,
                },
            ),
            (
                &[
                    ("X-MS-RateLimit-Remaining-Subscription-Writes", "199"),
                    ("x-ms-ratelimit-remaining-subscription-deletes", "0"),
                ],
                RateLimitHeaders {
                    reads: None,
                    writes: Some(199),
                    deletes: Some(0),
                },
            ),
            (
                &[("x-ms-ratelimit-remaining-subscription-reads", "lots")],
                RateLimitHeaders::default(),
            ),
            (
                &[("x-ms-ratelimit-remaining-tenant-reads", "100")],
                RateLimitHeaders::default(),
            ),
        ];
        for (hdrs, want) in cases {
            assert_eq!(RateLimitHeaders::parse(&h(hdrs)), *want, "{hdrs:?}");
        }
    }

    #[test]
    fn merge_keeps_values_a_response_did_not_carry() {
        let t0 = Instant::now();
        let b = Budget::merge(
            None,
            RateLimitHeaders {
                reads: Some(10),
                ..Default::default()
            },
            t0,
        );
        let b = Budget::merge(
            Some(b),
            RateLimitHeaders {
                writes: Some(5),
                ..Default::default()
            },
            t0,
        );
        assert_eq!((b.reads, b.writes, b.deletes), (Some(10), Some(5), None));
        let b = Budget::merge(
            Some(b),
            RateLimitHeaders {
                reads: Some(9),
                ..Default::default()
            },
            t0,
        );
        assert_eq!((b.reads, b.writes), (Some(9), Some(5)));
    }

    #[test]
    fn a_read_does_not_refresh_the_age_of_the_writes_figure() {
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_secs(30);
        let w = RateLimitHeaders {
            writes: Some(3),
            ..Default::default()
        };
        let r = RateLimitHeaders {
            reads: Some(240),
            ..Default::default()
        };
        let b = Budget::merge(Budget::merge(None, w, t0).into(), r, t1);
        assert_eq!(b.writes, Some(3));
        assert_eq!(b.writes_observed_at, Some(t0));
        assert_eq!(b.observed_at, t1);
    }
}
