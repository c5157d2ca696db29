//! Whether the controller's watches are alive, for `/healthz`.
//!
//! kube-runtime's watcher retries a failed list or watch with backoff (800 ms doubling to 30 s)
//! and yields every failure as an error item; a healthy but idle watch yields nothing. So a watch
//! is taken to have died when it has failed, with no success in between, for longer than a
//! threshold: the apiserver gone, or fhirlock's RBAC to list what it watches revoked. A short
//! outage (an apiserver rolling) stays under it. Any event (a relist included) heals the watch.
//! When the controller itself stops, the process exits, so `/healthz` stops answering.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Since when a watch has failed without a success, and its last error.
#[derive(Clone, Debug)]
struct Failing {
    since: Instant,
    last_error: String,
}

/// Shared between the watch streams (which report into it) and `/healthz` (which asks it).
#[derive(Clone, Debug)]
pub struct WatchHealth {
    threshold: Duration,
    failing: Arc<Mutex<BTreeMap<String, Failing>>>,
}

impl WatchHealth {
    pub fn new(threshold: Duration) -> WatchHealth {
        WatchHealth {
            threshold,
            failing: Default::default(),
        }
    }

    /// One item of the watch `name`'s stream: an error starts (or continues) its failure, any
    /// event ends it.
    pub fn observe<T, E: std::fmt::Display>(&self, name: &str, item: &Result<T, E>) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match item {
            Ok(_) => {
                if failing.remove(name).is_some() {
                    tracing::info!(watch = name, "the watch works again");
                }
            }
            Err(e) => {
                let now = Instant::now();
                let entry = failing.entry(name.to_owned()).or_insert_with(|| Failing {
                    since: now,
                    last_error: String::new(),
                });
                entry.last_error = e.to_string();
            }
        }
    }

    /// `Ok` while every watch works or has failed for less than the threshold; otherwise what
    /// is wrong, for the `/healthz` answer.
    pub fn check(&self) -> Result<(), String> {
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        verdict(
            failing
                .iter()
                .map(|(name, f)| (name.as_str(), f.since, f.last_error.as_str())),
            Instant::now(),
            self.threshold,
        )
    }
}

/// The watches, as `(name, failing since, last error)`, that have failed for longer than
/// `threshold` at `now`, said in one line; `Ok` when there are none.
fn verdict<'a>(
    failing: impl Iterator<Item = (&'a str, Instant, &'a str)>,
    now: Instant,
    threshold: Duration,
) -> Result<(), String> {
    let dead: Vec<String> = failing
        .filter(|(_, since, _)| now.saturating_duration_since(*since) > threshold)
        .map(|(name, since, error)| {
            let secs = now.saturating_duration_since(since).as_secs();
            format!("the watch of {name} has failed for {secs}s: {error}")
        })
        .collect();
    if dead.is_empty() {
        Ok(())
    } else {
        Err(dead.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_is_dead_only_after_failing_longer_than_the_threshold() {
        let t0 = Instant::now();
        let threshold = Duration::from_secs(60);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // (failing watches as (name, since), now) -> the dead ones
        type Case<'a> = (&'a [(&'a str, u64)], u64, &'a [&'a str]);
        let cases: &[Case] = &[
            (&[], 1000, &[]),
            (&[("securedfhirendpoints", 0)], 60, &[]),
            (
                &[("securedfhirendpoints", 0)],
                61,
                &["securedfhirendpoints"],
            ),
            (
                &[("securedfhirendpoints", 0), ("secrets in fhir", 30)],
                61,
                &["securedfhirendpoints"],
            ),
            (
                &[("securedfhirendpoints", 0), ("secrets in fhir", 30)],
                91,
                &["securedfhirendpoints", "secrets in fhir"],
            ),
            // A clock that went backwards is no failure.
            (&[("securedfhirendpoints", 100)], 50, &[]),
        ];
        for (failing, now, dead) in cases {
            let got = verdict(
                failing.iter().map(|(n, s)| (*n, at(*s), "403 Forbidden")),
                at(*now),
                threshold,
            );
            match (dead.is_empty(), &got) {
                (true, Ok(())) => {}
                (false, Err(msg)) => {
                    for name in *dead {
                        assert!(
                            msg.contains(&format!("the watch of {name} has failed for")),
                            "{failing:?} at {now}: {msg}"
                        );
                    }
                    assert_eq!(msg.matches("has failed").count(), dead.len(), "{msg}");
                    assert!(msg.contains("403 Forbidden"), "{msg}");
                }
                _ => panic!("{failing:?} at {now}: want dead {dead:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn an_event_heals_a_failing_watch_and_errors_keep_the_first_failure_time() {
        let h = WatchHealth::new(Duration::ZERO);
        let ok: Result<(), &str> = Ok(());
        h.observe("a", &ok);
        assert_eq!(h.check(), Ok(()));
        h.observe("a", &Err::<(), _>("connection refused"));
        std::thread::sleep(Duration::from_millis(5));
        h.observe("a", &Err::<(), _>("403 Forbidden"));
        let first = h.failing.lock().unwrap()["a"].since;
        let msg = h.check().unwrap_err();
        assert!(msg.contains("403 Forbidden"), "the last error: {msg}");
        h.observe("a", &Err::<(), _>("403 Forbidden"));
        assert_eq!(h.failing.lock().unwrap()["a"].since, first);
        h.observe("b", &ok);
        assert!(h.check().is_err(), "another watch's event does not heal a");
        h.observe("a", &ok);
        assert_eq!(h.check(), Ok(()));
    }
}
