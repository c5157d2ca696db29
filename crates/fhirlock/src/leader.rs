//! Leader election on a `coordination.k8s.io/v1` Lease, with `kube-lease-manager`.
//!
//! On top of the crate's watch loop, a guard confirms the claim from the Lease itself: the crate
//! keeps reporting `true` while its renewals fail (it only logs and backs off), so a leader cut
//! off from the apiserver would go on writing to Azure after the lease expired and another
//! replica took over. The guard reads the Lease when the last confirmed renewal is about to run
//! out and reports `false` unless the Lease still names this identity with a fresh renewTime.
//!
//! RBAC: `get`, `create` and `patch` on `leases` in the namespace.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// A running election. `is_leader` is `true` only while this replica holds the Lease and the
/// guard has confirmed it; it turns `false` (and then closes) when the election stops.
///
/// Dropping a `Leadership` stops renewing and releases the Lease in the background (on the current
/// runtime); [`Leadership::step_down`] does the same and waits for the release.
#[derive(Debug)]
pub struct Leadership {
    pub is_leader: watch::Receiver<bool>,
    /// Until when the Lease was last confirmed to be ours (see [`Gate`]).
    until: watch::Receiver<Option<Instant>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Asked before every write, to Azure or to the apiserver: may this replica act now? Leadership
/// alone is checked when the guard task runs; a process stopped (SIGSTOP, a frozen VM, a long GC
/// pause) past its lease resumes with every task at once, and a reconcile in flight could write
/// before the guard noticed. So the gate also compares the monotonic clock with the instant the
/// Lease was last confirmed valid until, which needs no task to run.
#[derive(Clone, Debug)]
pub struct Gate {
    leading: watch::Receiver<bool>,
    until: Option<watch::Receiver<Option<Instant>>>,
}

impl Gate {
    /// No election: this replica always acts.
    pub fn always() -> Gate {
        // A receiver keeps reading the last value after its sender is gone.
        let (_, leading) = watch::channel(true);
        Gate {
            leading,
            until: None,
        }
    }

    pub fn may_act(&self) -> bool {
        let until = self.until.as_ref().map(|u| *u.borrow());
        may_act(*self.leading.borrow(), until, Instant::now())
    }

    /// Whether the guard reports this replica as leader (without the clock check).
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }
}

/// `until`: `None` without an election; `Some(None)` when no claim is confirmed.
fn may_act(leading: bool, until: Option<Option<Instant>>, now: Instant) -> bool {
    leading
        && match until {
            None => true,
            Some(until) => until.is_some_and(|u| now < u),
        }
}

/// Joins the election for `namespace/lease_name` as `identity` (use the pod name). The Lease is
/// created if missing. `lease_duration` is how long a claim stays valid after its last renewal,
/// in whole seconds (at least 2): a replica that dies without stepping down is replaced after
/// at most about that long.
pub async fn elect(
    client: kube::Client,
    namespace: &str,
    lease_name: &str,
    identity: &str,
    lease_duration: Duration,
) -> anyhow::Result<Leadership> {
    let duration_secs = lease_duration.as_secs();
    if duration_secs < 2 {
        bail!(
            "lease duration must be at least 2 s (it is {lease_duration:?}): the lease is kept in whole seconds and renewed before it runs out"
        );
    }
    if identity.is_empty() {
        bail!("the leader-election identity must not be empty");
    }
    // The holder renews `grace` seconds before expiry; a third of the duration (client-go's
    // 15 s / 10 s split) leaves room for a slow apiserver and for clock skew between nodes.
    let grace_secs = (duration_secs / 3).max(1);
    let manager: LeaseManager = LeaseManagerBuilder::new(client.clone(), lease_name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration_secs)
        .with_grace(grace_secs)
        .build()
        .await
        .with_context(|| format!("joining the election on Lease {namespace}/{lease_name}"))?;
    let (inner, manager_task) = manager.watch().await;
    let (out, is_leader) = watch::channel(false);
    let (until_tx, until) = watch::channel(None);
    let (stop, stop_rx) = oneshot::channel();
    let guard = Guard {
        api: Api::namespaced(client, namespace),
        lease_name: lease_name.to_owned(),
        identity: identity.to_owned(),
        duration: Duration::from_secs(duration_secs),
        grace: Duration::from_secs(grace_secs),
    };
    let task = tokio::spawn(guard.run(inner, manager_task, (out, until_tx), stop_rx));
    tracing::info!(
        namespace,
        lease = lease_name,
        identity,
        "joined leader election"
    );
    Ok(Leadership {
        is_leader,
        until,
        stop,
        task,
    })
}

impl Leadership {
    /// The gate every write asks.
    pub fn gate(&self) -> Gate {
        Gate {
            leading: self.is_leader.clone(),
            until: Some(self.until.clone()),
        }
    }

    /// Stops leading (the receivers see `false`), then releases the Lease so another replica can
    /// take it without waiting for it to expire. The others notice at their next look at the
    /// Lease, which `kube-lease-manager` schedules for when the old claim would have expired, so
    /// a hand-over still takes up to one lease duration; a release only spares the expiry check.
    pub async fn step_down(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "leader election task ended abnormally");
        }
    }
}

struct Guard {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    duration: Duration,
    grace: Duration,
}

/// What one look at the Lease said about this identity's claim.
enum Claim {
    /// Ours; valid (by our clock, which wrote renewTime) until this instant.
    HeldUntil(Instant),
    /// Someone else's, or no one's.
    NotOurs,
}

impl Guard {
    async fn run(
        self,
        mut inner: watch::Receiver<bool>,
        manager_task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
        (out, until_out): (watch::Sender<bool>, watch::Sender<Option<Instant>>),
        mut stop: oneshot::Receiver<()>,
    ) {
        // Until when the Lease was last seen to name us with a fresh renewal (minus a margin).
        let mut confirmed_until: Option<Instant> = None;
        let mut next_check = Instant::now();
        loop {
            let manager_says = *inner.borrow_and_update();
            let now = Instant::now();
            let leading = manager_says && confirmed_until.is_some_and(|u| now < u);
            until_out.send_replace(confirmed_until.filter(|_| manager_says));
            out.send_if_modified(|v| {
                let changed = *v != leading;
                if changed {
                    tracing::info!(identity = %self.identity, leading, "leadership changed");
                }
                *v = leading;
                changed
            });
            tokio::select! {
                biased;
                _ = &mut stop => break,
                changed = inner.changed() => {
                    if changed.is_err() {
                        tracing::error!(identity = %self.identity, "lease manager stopped; no longer leading");
                        break;
                    }
                    // Whatever the manager says now, confirm it afresh before claiming to lead.
                    confirmed_until = None;
                    next_check = Instant::now();
                }
                _ = tokio::time::sleep_until(next_check.into()), if manager_says => {
                    match self.check().await {
                        Some(Claim::HeldUntil(until)) => confirmed_until = Some(until),
                        Some(Claim::NotOurs) => confirmed_until = None,
                        // Unknown: keep the last confirmation; it runs out on its own.
                        None => {}
                    }
                    let now = Instant::now();
                    next_check = match confirmed_until {
                        // Look again when this confirmation runs out; the manager renews `grace`
                        // before expiry, so by then the Lease shows the next renewal.
                        Some(until) if until > now => until,
                        _ => now + self.grace / 2,
                    };
                }
            }
        }
        out.send_replace(false);
        until_out.send_replace(None);
        // Closing the manager's channel makes it release the Lease and return.
        drop(inner);
        match tokio::time::timeout(self.duration, manager_task).await {
            Ok(Ok(Ok(_))) => tracing::info!(identity = %self.identity, "released the lease"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(identity = %self.identity, error = %e, "releasing the lease failed; it expires on its own")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "lease manager task failed"),
            Err(_) => {
                tracing::warn!(identity = %self.identity, "releasing the lease timed out; it expires on its own")
            }
        }
    }

    /// Reads the Lease, bounded in time so a hung request cannot stretch a claim. `None` when
    /// the read failed.
    async fn check(&self) -> Option<Claim> {
        let read = tokio::time::timeout(self.grace / 2, self.api.get(&self.lease_name)).await;
        let lease = match read {
            Ok(Ok(lease)) => lease,
            Ok(Err(e)) => {
                tracing::warn!(lease = %self.lease_name, error = %e, "reading the lease failed");
                return None;
            }
            Err(_) => {
                tracing::warn!(lease = %self.lease_name, "reading the lease timed out");
                return None;
            }
        };
        let spec = lease.spec.unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Some(Claim::NotOurs);
        }
        let Some(renewed) = spec.renew_time else {
            return Some(Claim::NotOurs);
        };
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.duration, Duration::from_secs);
        let expiry = SystemTime::from(renewed.0) + duration;
        // Stop claiming half a grace before expiry: the other replicas may take over at expiry by
        // their clocks, which can run a little ahead of ours.
        let left = expiry
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(self.grace / 2);
        Some(Claim::HeldUntil(Instant::now() + left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_acts_only_while_its_confirmed_claim_lasts_by_its_own_clock() {
        let now = Instant::now();
        let s = Duration::from_secs;
        // (leading, until, now) -> may act
        let table = [
            (true, None, now, true),
            (false, None, now, false),
            (true, Some(Some(now + s(5))), now, true),
            (true, Some(Some(now + s(5))), now + s(5), false),
            // Resumed after a SIGSTOP longer than the lease: the guard still says leading.
            (true, Some(Some(now + s(5))), now + s(60), false),
            (true, Some(None), now, false),
            (false, Some(Some(now + s(5))), now, false),
        ];
        for (leading, until, at, want) in table {
            assert_eq!(
                may_act(leading, until, at),
                want,
                "{leading} {until:?} {at:?}"
            );
        }
    }
}
