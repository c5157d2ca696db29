//! What the operator remembers between reconciles, in memory only: one entry per endpoint and one
//! per subscription. Everything that decides is a plain method taking the time as a value, so it
//! is unit-tested without a clock; [`Memory`] only adds the lock.
//!
//! Nothing here is needed for correctness after a restart: losing it costs extra reads, never a
//! wrong decision (`Ready` and "nothing left to do" are always judged on a full read).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fhirlock_core::Observed;

/// `<namespace>/<name>` of an endpoint.
pub type EndpointKey = String;

/// Azure as fhirlock's own last writes left it: what it read before them, with ARM's answers to
/// them taken in. The next reconcile re-reads only `reread` (a write answered without a body, or
/// the resource of a long-running operation) instead of all seven resources: reads are what
/// bounds convergence under ARM's read bucket.
#[derive(Clone, Debug)]
pub struct Followup {
    pub generation: Option<i64>,
    pub observed: Observed,
    pub reread: Vec<String>,
    /// Not trusted after this: someone else may have changed Azure meanwhile.
    pub until: Instant,
}

/// fhirlock's own status writes of one reconcile: the watch reports them as changes, and they
/// are not. `next_at` is when that reconcile meant to look again.
#[derive(Clone, Debug, Default)]
pub struct OwnWrites {
    pub resource_versions: Vec<String>,
    pub next_at: Option<Instant>,
}

/// One endpoint's memory.
#[derive(Clone, Debug, Default)]
pub struct EndpointMemory {
    /// Consecutive retryable failures, for exponential backoff.
    pub failures: u32,
    pub followup: Option<Followup>,
    pub own_writes: OwnWrites,
    pub health: HealthCheck,
    /// The last `CertificateExpiresSoon` Warning: the certificate's notAfter, and when.
    pub expiry_warned: Option<(i64, Instant)>,
}

/// At most one `CertificateExpiresSoon` Warning per day for one certificate.
pub const EXPIRY_WARNING_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The endpoint's backend-health checks (a POST that ARM runs as a long-running operation).
/// Losing this costs at most one check, never a wrong condition: Reachable keeps what status says.
#[derive(Clone, Debug, Default)]
pub struct HealthCheck {
    /// The check whose answer is still to be read.
    pub in_flight: Option<fhirlock_arm::Operation>,
    /// When the last check was started.
    pub last_started: Option<Instant>,
}

impl HealthCheck {
    /// Whether to start a check now: none in flight, and the last one started at least `min`
    /// ago. A replica that has never checked but finds Reachable judged in status (a restart, a
    /// new leader) counts from now, so that a restart does not cost every endpoint a POST.
    pub fn due(&mut self, judged: bool, now: Instant, min: Duration) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        match self.last_started {
            Some(t) => now.saturating_duration_since(t) >= min,
            None if judged => {
                self.last_started = Some(now);
                false
            }
            None => true,
        }
    }
}

impl EndpointMemory {
    /// When a reconcile was triggered by fhirlock's own status write (`resource_version`), the
    /// time left until the look it had already scheduled.
    pub fn echo_wait(&self, resource_version: Option<&str>, now: Instant) -> Option<Duration> {
        let left = self.own_writes.next_at?.checked_duration_since(now)?;
        let rv = resource_version?;
        self.own_writes
            .resource_versions
            .iter()
            .any(|x| x == rv)
            .then_some(left)
    }

    /// The followup, if it still applies (same generation, fresh). Taken: it serves one
    /// reconcile only.
    pub fn take_followup(&mut self, generation: Option<i64>, now: Instant) -> Option<Followup> {
        let f = self.followup.take()?;
        (f.generation == generation && now < f.until).then_some(f)
    }

    /// Whether to warn now about the certificate expiring at `not_after`: a day after the last
    /// warning, or at once for another certificate. Losing the memory (a restart) costs one
    /// Warning more, never one less.
    pub fn expiry_warning_due(&mut self, not_after: i64, now: Instant) -> bool {
        let due = match self.expiry_warned {
            Some((warned, at)) if warned == not_after => {
                now.saturating_duration_since(at) >= EXPIRY_WARNING_EVERY
            }
            _ => true,
        };
        if due {
            self.expiry_warned = Some((not_after, now));
        }
        due
    }

    /// One more retryable failure: the backoff before trying again, exponential per endpoint
    /// (2^n seconds, at most 300), never sooner than ARM asked, never under a second. The caller
    /// multiplies it by a jitter in [1, 2) so that endpoints throttled together spread out.
    pub fn fail(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = Duration::from_secs(2u64.saturating_pow(self.failures.min(8)))
            .min(Duration::from_secs(300));
        exp.max(retry_after.unwrap_or_default())
            .max(Duration::from_secs(1))
    }

    /// A reconcile that ended well: status written as `rv` (plus the write-ahead's `earlier`),
    /// next look at `next_at`.
    pub fn succeed(&mut self, rv: Option<String>, mut earlier: Vec<String>, next_at: Instant) {
        self.failures = 0;
        self.own_writes = match rv {
            Some(rv) => {
                earlier.push(rv);
                OwnWrites {
                    resource_versions: earlier,
                    next_at: Some(next_at),
                }
            }
            None => OwnWrites::default(),
        };
    }
}

/// An ARM bucket as far as fhirlock can tell: the largest remaining figure seen.
#[derive(Clone, Copy, Debug, Default)]
struct Capacity {
    reads: u32,
    writes: u32,
}

/// Which of a subscription's buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Reads,
    Writes,
}

/// How fhirlock shares a subscription's ARM buckets with everyone else using it.
#[derive(Clone, Copy, Debug)]
pub struct BudgetRule {
    /// The share of each bucket fhirlock may use (0–1).
    pub share: f64,
    /// Refill per second of the bucket.
    pub refill: f64,
    /// The largest size fhirlock assumes (Azure's documented size); a smaller one is learnt.
    pub size: u32,
}

/// Per-endpoint memory and per-subscription bucket estimates, behind one lock each.
#[derive(Debug, Default)]
pub struct Memory {
    endpoints: Mutex<HashMap<EndpointKey, EndpointMemory>>,
    capacity: Mutex<HashMap<String, Capacity>>,
}

impl Memory {
    /// Runs `f` on the endpoint's memory (created empty when absent).
    pub fn endpoint<T>(&self, key: &str, f: impl FnOnce(&mut EndpointMemory) -> T) -> T {
        let mut all = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(key.to_owned()).or_default())
    }

    /// The endpoint is gone, or its memory is stale.
    pub fn forget(&self, key: &str) {
        self.endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// What a former leadership learnt about Azure is stale by the time it leads again.
    pub fn forget_followups(&self) {
        for m in self
            .endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values_mut()
        {
            m.followup = None;
        }
    }

    /// `None` when fhirlock's share of `bucket` allows a request now; otherwise how long until
    /// it does. `remaining` is ARM's last figure, `age` how old it is.
    pub fn bucket_wait(
        &self,
        subscription: &str,
        bucket: Bucket,
        remaining: u32,
        age: Duration,
        rule: BudgetRule,
    ) -> Option<Duration> {
        let mut caps = self.capacity.lock().unwrap_or_else(|p| p.into_inner());
        let cap = caps.entry(subscription.to_owned()).or_default();
        let seen = match bucket {
            Bucket::Reads => &mut cap.reads,
            Bucket::Writes => &mut cap.writes,
        };
        *seen = (*seen).max(remaining);
        // Bounded by Azure's documented size: one large figure (a raised limit, another region's
        // bucket) must not set a floor the real bucket never reaches.
        bucket_wait(
            remaining,
            age,
            (*seen).min(rule.size),
            rule.share,
            rule.refill,
        )
    }
}

/// An ARM bucket as documented: it refills at `refill` per second up to its size. fhirlock
/// keeps its estimate of what is left above `(1 - share)` of the capacity it assumes, and says
/// how long to wait when it is not.
pub fn bucket_wait(
    remaining: u32,
    age: Duration,
    capacity: u32,
    share: f64,
    refill: f64,
) -> Option<Duration> {
    let floor = (capacity as f64 * (1.0 - share)).floor();
    let estimate = (remaining as f64 + refill * age.as_secs_f64()).min(capacity as f64);
    if estimate >= floor + 1.0 {
        return None;
    }
    let secs = if refill > 0.0 {
        (floor + 1.0 - estimate) / refill
    } else {
        60.0
    };
    Some(Duration::from_secs_f64(secs.clamp(0.5, 60.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(share: f64, refill: f64, size: u32) -> BudgetRule {
        BudgetRule {
            share,
            refill,
            size,
        }
    }

    #[test]
    fn a_large_figure_once_seen_does_not_hold_fhirlock_back_for_good() {
        let m = Memory::default();
        let s = Duration::from_secs;
        let r = rule(0.5, 25.0, 250);
        let w = |rem, age| m.bucket_wait("sub", Bucket::Reads, rem, age, r);
        // A raised limit (or another region's bucket) reported a million; then Azure's 250.
        assert_eq!(w(999_000, s(0)), None);
        assert_eq!(w(240, s(0)), None);
        // Held back only below half of Azure's bucket, and only until it refills.
        assert_eq!(w(100, s(0)), Some(Duration::from_secs_f64(1.04)));
        assert_eq!(w(100, s(2)), None);
        // A bucket smaller than Azure's documented one is learnt from what ARM reports.
        let small = Memory::default();
        let r = rule(0.5, 0.05, 200);
        assert_eq!(small.bucket_wait("sub", Bucket::Writes, 6, s(0), r), None);
        assert_eq!(
            small.bucket_wait("sub", Bucket::Writes, 1, s(0), r),
            Some(s(60))
        );
        // The read and write buckets are learnt apart.
        assert_eq!(
            small.bucket_wait("sub", Bucket::Reads, 1, s(0), rule(0.5, 25.0, 250)),
            None
        );
    }

    #[test]
    fn the_budget_keeps_fhirlock_inside_its_share_of_a_refilling_bucket() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (remaining, age, capacity, share, refill/s) -> wait
        let table = [
            (200, s(0), 200, 0.5, 10.0, None),
            (101, s(0), 200, 0.5, 10.0, None),
            (100, s(0), 200, 0.5, 10.0, Some(ms(500))),
            (100, s(1), 200, 0.5, 10.0, None),
            (1, s(0), 5, 0.5, 0.05, Some(s(40))),
            (1, s(20), 5, 0.5, 0.05, Some(s(20))),
            (1, s(40), 5, 0.5, 0.05, None),
            (0, s(0), 200, 1.0, 10.0, Some(ms(500))),
            (199, s(0), 200, 0.0, 10.0, Some(ms(500))),
            (199, s(3600), 200, 0.0, 10.0, Some(ms(500))),
        ];
        for (remaining, age, cap, share, refill, want) in table {
            assert_eq!(
                bucket_wait(remaining, age, cap, share, refill),
                want,
                "{remaining} {age:?} {cap} {share} {refill}"
            );
        }
    }

    #[test]
    fn a_health_check_is_due_once_per_interval_and_not_at_once_after_a_restart() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut h = HealthCheck::default();
        assert!(h.due(false, now, s(900)), "never checked, nothing judged");
        h.last_started = Some(now);
        assert!(!h.due(false, now + s(899), s(900)));
        assert!(h.due(false, now + s(900), s(900)));
        h.in_flight = Some(fhirlock_arm::Operation {
            resource_id: "/g".into(),
            method: "POST".into(),
            api_version: "v".into(),
            status_url: "https://arm/op".into(),
            kind: fhirlock_arm::OperationKind::Location,
            retry_after_secs: None,
        });
        assert!(!h.due(false, now + s(3600), s(900)), "one at a time");
        // A restarted replica with Reachable already judged in status waits an interval.
        let mut fresh = HealthCheck::default();
        assert!(!fresh.due(true, now, s(900)));
        assert!(fresh.due(true, now + s(900), s(900)));
    }

    #[test]
    fn the_expiry_warning_is_given_once_a_day_per_certificate() {
        let t0 = Instant::now();
        let mut m = EndpointMemory::default();
        let hour = Duration::from_secs(3600);
        assert!(m.expiry_warning_due(100, t0), "the first look warns");
        assert!(!m.expiry_warning_due(100, t0 + hour));
        assert!(!m.expiry_warning_due(100, t0 + 23 * hour));
        assert!(m.expiry_warning_due(100, t0 + 24 * hour), "a day later");
        assert!(!m.expiry_warning_due(100, t0 + 25 * hour));
        // A renewed certificate that still expires soon is told at once.
        assert!(m.expiry_warning_due(200, t0 + 26 * hour));
        assert!(!m.expiry_warning_due(200, t0 + 27 * hour));
    }

    #[test]
    fn backoff_doubles_per_failure_honours_retry_after_and_resets_on_success() {
        let s = Duration::from_secs;
        let mut m = EndpointMemory::default();
        assert_eq!(m.fail(None), s(2));
        assert_eq!(m.fail(None), s(4));
        assert_eq!(m.fail(Some(s(30))), s(30));
        for _ in 0..10 {
            m.fail(None);
        }
        assert_eq!(m.fail(None), s(256), "capped at 2^8");
        assert_eq!(m.fail(Some(s(900))), s(900), "never sooner than ARM asks");
        m.succeed(None, Vec::new(), Instant::now());
        assert_eq!(m.failures, 0);
        assert_eq!(m.fail(None), s(2));
    }

    #[test]
    fn own_status_writes_are_echoes_until_the_scheduled_look() {
        let now = Instant::now();
        let mut m = EndpointMemory::default();
        m.succeed(
            Some("12".into()),
            vec!["11".into()],
            now + Duration::from_secs(60),
        );
        assert_eq!(m.echo_wait(Some("12"), now), Some(Duration::from_secs(60)));
        assert_eq!(m.echo_wait(Some("11"), now), Some(Duration::from_secs(60)));
        assert_eq!(m.echo_wait(Some("13"), now), None, "someone else's change");
        assert_eq!(m.echo_wait(None, now), None);
        let later = now + Duration::from_secs(61);
        assert_eq!(m.echo_wait(Some("12"), later), None, "the look is due");
        m.succeed(None, Vec::new(), now);
        assert_eq!(m.echo_wait(Some("12"), now), None, "no status written");
    }

    #[test]
    fn a_followup_serves_one_reconcile_of_the_same_generation_while_fresh() {
        let now = Instant::now();
        let followup = |generation| Followup {
            generation,
            observed: Observed::default(),
            reread: vec![],
            until: now + Duration::from_secs(300),
        };
        let mut m = EndpointMemory {
            followup: Some(followup(Some(1))),
            ..Default::default()
        };
        assert!(m.take_followup(Some(1), now).is_some());
        assert!(m.take_followup(Some(1), now).is_none(), "taken");
        m.followup = Some(followup(Some(1)));
        assert!(m.take_followup(Some(2), now).is_none(), "spec changed");
        m.followup = Some(followup(Some(1)));
        assert!(
            m.take_followup(Some(1), now + Duration::from_secs(301))
                .is_none(),
            "expired"
        );
    }
}
