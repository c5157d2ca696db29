//! One reconcile of a SecuredFhirEndpoint, as a pipeline:
//!
//! ```text
//! resolve (kube I/O) → observe (ARM reads) → plan (pure) → apply (ARM writes) → report (kube I/O)
//! ```
//!
//! - **resolve**: tenancy (which scopes and identity this namespace has), the TLS Secret, the
//!   ARM client. Anything wrong here is `Stalled` with zero Azure calls.
//! - **observe**: resume a pending long-running operation if status holds one; then 7 GETs, or
//!   right after fhirlock's own writes only what their answers left unknown ([`Followup`]).
//! - **plan**: `fhirlock-core` decides: pre-flight, findings, the ordered steps.
//! - **apply**: Enforce mode on the leader only, within the subscription's ARM budget: the ready
//!   steps in order, stopping at the first long-running operation (its handle goes to status).
//! - **report**: status by server-side apply, Events for writes, drift and stalls, metrics, and
//!   when to look again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fhirlock_api::v1alpha1::{
    Drift, Finding, GatewayStatus, Mode, PendingOperation, PlannedChange, SecuredFhirEndpointStatus,
};
use fhirlock_api::{FIELD_MANAGER, SecuredFhirEndpoint};
use fhirlock_arm::{ArmClient, ArmError, ErrorClass, Operation, OperationKind, OperationStatus};
use fhirlock_core::status::{self, Outcome};
use fhirlock_core::{Desired, Observed, plan, posture};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::azure::{self, Applied};
use crate::identity::Identities;
use crate::telemetry::Metrics;

/// Shared by every reconcile.
pub struct Context {
    pub client: kube::Client,
    pub identities: Identities,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub is_leader: tokio::sync::watch::Receiver<bool>,
    /// Consecutive failures per endpoint, for exponential backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// The largest remaining-writes figure seen per subscription: an estimate of the bucket size.
    pub write_capacity: Mutex<HashMap<String, u32>>,
    /// Likewise for the read bucket.
    pub read_capacity: Mutex<HashMap<String, u32>>,
    /// Per endpoint: the resourceVersions of fhirlock's own status writes in its last reconcile
    /// and when it meant to look again. The watch reports those writes as changes; they are not.
    pub own_writes: Mutex<HashMap<String, (Vec<String>, Instant)>>,
    /// Per endpoint: what fhirlock knew right after its last writes (see [`Followup`]).
    pub followups: Mutex<HashMap<String, Followup>>,
}

/// Azure as fhirlock's own last writes left it: what it read before them, with ARM's answers to
/// them taken in. The next reconcile re-reads only `reread` (a write answered without a body, or
/// the resource of a long-running operation) instead of all seven resources: a few GETs instead of
/// seven per step, which is what bounds convergence under ARM's read bucket (benchmark B5).
#[derive(Debug)]
pub struct Followup {
    generation: Option<i64>,
    observed: Observed,
    reread: Vec<String>,
    /// Not trusted after this: someone else may have changed Azure meanwhile.
    until: Instant,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// How often a converged endpoint is compared with Azure again (jittered ±10%).
    pub resync: Duration,
    /// The share of a subscription's ARM write bucket fhirlock may use (0–1).
    pub budget_share: f64,
    /// How fast ARM refills the write bucket (writes per second; Azure's is 10).
    pub write_refill_per_second: f64,
    /// How fast ARM refills the read bucket (reads per second; Azure's is 25).
    pub read_refill_per_second: f64,
    /// The largest bucket sizes fhirlock assumes (Azure's: 200 writes, 250 reads).
    pub write_bucket_size: u32,
    pub read_bucket_size: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Azure: {0}")]
    Arm(ArmError),
    #[error("deleting: {0}")]
    CleanupPending(String, Duration),
    #[error("{0}")]
    Other(String),
}

fn jitter(d: Duration) -> Duration {
    let f: f64 = rand::random_range(0.9..1.1);
    d.mul_f64(f)
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn key(sfe: &SecuredFhirEndpoint) -> String {
    format!("{}/{}", sfe.namespace().unwrap_or_default(), sfe.name_any())
}

/// Apply: the endpoint exists and should be secured.
pub async fn apply(sfe: Arc<SecuredFhirEndpoint>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    if !*ctx.is_leader.borrow() {
        // Only the leader reads or writes Azure; standbys keep their caches warm.
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let ns = sfe.namespace().unwrap_or_default();
    let name = sfe.name_any();
    let previous = sfe.status.clone().unwrap_or_default();
    if let Some(wait) = own_write_echo(&ctx, &sfe) {
        return Ok(Action::requeue(wait));
    }

    // ---- resolve -------------------------------------------------------------------------------
    let resolved = match ctx.identities.resolve(&sfe).await {
        Ok(r) => r,
        Err(stall) => {
            let outcome = Outcome {
                terminal_error: Some((stall.reason.to_owned(), stall.message.clone())),
                ..Default::default()
            };
            report(&ctx, &sfe, None, &outcome, Report::default()).await?;
            publish(&ctx, &sfe, EventType::Warning, stall.reason, &stall.message).await;
            ctx.metrics.reconcile("stalled", started.elapsed());
            return Ok(Action::await_change());
        }
    };
    let (d, arm) = (resolved.desired, resolved.arm);

    // ---- observe (resuming an operation in flight) -----------------------------------------------
    // A poll and a look cost up to 8 reads: hold back while the read bucket is below fhirlock's
    // share. Checked once, before the poll: a reconcile that polled and was then held back would
    // poll again next time, and many endpoints doing so spent the whole bucket on polls while none
    // got further (benchmark B5: 0 of 100 Ready after 240 s, reads at exactly the refill rate).
    if let Some(wait) = read_wait(&ctx, &arm, &d.subscription) {
        ctx.metrics.reconcile("ok", started.elapsed());
        return Ok(Action::requeue(wait.mul_f64(rand::random_range(1.0..2.0))));
    }
    if let Some(p) = previous.pending_operations.first() {
        let op = operation_of(p);
        match arm.poll(&op).await {
            Ok(OperationStatus::InProgress { retry_after }) => {
                let wait = retry_after.unwrap_or_else(|| op.next_poll_in(None));
                ctx.metrics.reconcile("ok", started.elapsed());
                return Ok(Action::requeue(wait));
            }
            Ok(OperationStatus::Succeeded) => {
                publish_action(
                    &ctx,
                    &sfe,
                    EventType::Normal,
                    "OperationSucceeded",
                    &p.step,
                    &format!("{} on {} finished", p.step, p.resource_id),
                )
                .await;
            }
            Ok(OperationStatus::Failed(e)) => {
                publish_action(
                    &ctx,
                    &sfe,
                    EventType::Warning,
                    "OperationFailed",
                    &p.step,
                    &format!("{} on {} failed: {}", p.step, p.resource_id, e),
                )
                .await;
            }
            Err(e) if e.class.is_retryable() => {
                return Ok(Action::requeue(
                    e.retry_after.unwrap_or(Duration::from_secs(10)),
                ));
            }
            Err(e) => {
                // The handle no longer resolves (for example the operation expired): observe afresh.
                ctx.followups.lock().unwrap().remove(&key(&sfe));
                tracing::warn!(endpoint = %key(&sfe), error = %e, "dropping an operation handle that no longer polls");
            }
        }
    }
    // ---- observe, then plan (pure) -------------------------------------------------------------
    // Right after its own writes fhirlock reads back only what their answers did not tell it, and
    // plans the next step on that. Anything else, including "nothing left to do", is judged on a
    // full read.
    let mut followup = take_followup(&ctx, &sfe);
    let (observed, mut outcome) = loop {
        let partial = followup.is_some();
        let read = match followup.take() {
            Some(f) => azure::reread(&arm, &d, f.observed, &f.reread).await,
            None => azure::observe(&arm, &d).await,
        };
        let observed = match read {
            Ok(o) => o,
            Err(e) => return arm_failure(&ctx, &sfe, &d, e, started).await,
        };
        let outcome = Outcome::assess(&d, &observed);
        if partial
            && !(outcome.preflight.is_empty() && outcome.plan.steps.iter().any(|s| s.ready()))
        {
            continue;
        }
        break (observed, outcome);
    };

    let mut rep = Report {
        observed: Some(observed.clone()),
        ..Default::default()
    };

    // ---- apply ---------------------------------------------------------------------------------------
    let mut next = jitter(ctx.settings.resync);
    let mut echoes = Vec::new();
    if outcome.preflight.is_empty() && !outcome.audit && !outcome.plan.is_empty() {
        if let Some(wait) = budget_wait(&ctx, &arm, &d.subscription) {
            outcome.throttled = true;
            ctx.metrics.deferred_writes(&d.subscription);
            tracing::info!(subscription = %d.subscription, budget = ?arm.budget(&d.subscription), "writes deferred to stay within the ARM budget share");
            next = wait;
        } else {
            // Drift: a change to a component that was converged before (not the first convergence).
            let converged_before = |kind: fhirlock_core::StepKind| {
                let component = component_of(kind);
                previous
                    .conditions
                    .iter()
                    .any(|c| c.type_ == component && c.status == "True")
            };
            let drift: Vec<_> = outcome
                .plan
                .steps
                .iter()
                .filter(|s| !s.creates && converged_before(s.kind))
                .flat_map(|s| {
                    s.changes
                        .iter()
                        .map(move |c| (s.resource_id.clone(), c.clone()))
                })
                .collect();
            let creating: Vec<String> = outcome
                .plan
                .steps
                .iter()
                .filter(|s| s.ready() && s.creates)
                .map(|s| s.resource_id.clone())
                .filter(|id| {
                    !previous
                        .created_resources
                        .iter()
                        .any(|x| fhirlock_core::id::same(x, id))
                })
                .collect();
            if !creating.is_empty() {
                let (rv, all) =
                    record_creations(&ctx, &sfe, &previous.created_resources, &creating).await?;
                echoes.extend(rv);
                rep.created.extend(all);
            }
            let result = azure::apply(&arm, &outcome.plan.steps, |_| {}).await;
            let (written, result) = match result {
                Ok(applied) => {
                    let written = applied.writes();
                    remember_followup(&ctx, &sfe, &d, &observed, &applied);
                    let pending = match applied {
                        Applied::Done { .. } => None,
                        Applied::Pending {
                            operation, step, ..
                        } => Some((operation, step)),
                    };
                    (written, Ok(pending))
                }
                Err((writes, e)) => (writes, Err(e)),
            };
            let ready: Vec<_> = outcome
                .plan
                .steps
                .iter()
                .filter(|s| s.ready())
                .take(written)
                .cloned()
                .collect();
            for s in &ready {
                let note = format!("{:?} {:?} {}", s.kind, s.method, s.resource_id);
                publish_action(
                    &ctx,
                    &sfe,
                    EventType::Normal,
                    "AzureWrite",
                    &format!("{:?}", s.kind),
                    &note,
                )
                .await;
            }
            let corrected: Vec<_> = drift
                .iter()
                .filter(|(id, _)| ready.iter().any(|s| &s.resource_id == id))
                .collect();
            if !corrected.is_empty() {
                let fields: Vec<String> = corrected
                    .iter()
                    .map(|(id, c)| format!("{}: {c}", short(id)))
                    .collect();
                for ((_, c), f) in corrected.iter().zip(&fields) {
                    publish_action(&ctx, &sfe, EventType::Normal, "DriftCorrected", &c.path, f)
                        .await;
                }
                for (id, _) in &corrected {
                    ctx.metrics
                        .drift_corrected(&fhirlock_arm::resource_type(id));
                }
                rep.drift = Some(Drift {
                    time: now(),
                    fields: fields.into_iter().take(64).collect(),
                });
            }
            match result {
                Ok(None) => {
                    next = if written > 0 {
                        Duration::from_millis(500)
                    } else {
                        Duration::from_secs(5)
                    }
                }
                Ok(Some((op, step))) => {
                    next = op.next_poll_in(None);
                    outcome.operation_pending = true;
                    rep.pending = Some(PendingOperation {
                        resource_id: op.resource_id.clone(),
                        step: format!("{:?}", step.kind),
                        method: op.method.clone(),
                        api_version: op.api_version.clone(),
                        status_url: op.status_url.clone(),
                        kind: format!("{:?}", op.kind),
                        started: Some(now()),
                    });
                }
                Err(e) => {
                    report(&ctx, &sfe, Some(&d), &outcome, rep).await?;
                    return arm_failure(&ctx, &sfe, &d, e, started).await;
                }
            }
        }
    } else if !outcome.preflight.is_empty() {
        let f = &outcome.preflight[0];
        publish(
            &ctx,
            &sfe,
            EventType::Warning,
            "PreflightFailed",
            &format!("{}: {}", f.code, f.message),
        )
        .await;
    }

    // ---- report ---------------------------------------------------------------------------------------
    let ready_now = outcome.preflight.is_empty()
        && outcome.plan.is_empty()
        && !outcome.audit
        && outcome
            .findings
            .iter()
            .all(|f| f.severity == posture::Severity::Advisory);
    let was_ready = previous
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready_now && !was_ready {
        let since = sfe
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| Timestamp::now().duration_since(t.0).as_secs_f64());
        if let Some(s) = since {
            ctx.metrics.time_to_ready(s.max(0.0));
        }
        publish(
            &ctx,
            &sfe,
            EventType::Normal,
            "Secured",
            "only the gateway reaches the FHIR API",
        )
        .await;
    }
    let codes = finding_counts(&outcome.findings);
    ctx.metrics.set_endpoint(
        &ns,
        &name,
        ready_now,
        &codes.iter().map(|(c, n)| (*c, *n)).collect::<Vec<_>>(),
    );
    let written = report(&ctx, &sfe, Some(&d), &outcome, rep).await?;
    remember_own_write(&ctx, &sfe, written, echoes, next);
    ctx.failures.lock().unwrap().remove(&key(&sfe));
    ctx.metrics.reconcile(
        if outcome.preflight.is_empty() {
            "ok"
        } else {
            "stalled"
        },
        started.elapsed(),
    );
    Ok(Action::requeue(next))
}

/// Cleanup: the endpoint is being deleted.
pub async fn cleanup(sfe: Arc<SecuredFhirEndpoint>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = sfe.namespace().unwrap_or_default();
    if sfe.spec.deletion_policy == fhirlock_api::v1alpha1::DeletionPolicy::Retain
        || sfe.spec.mode == Mode::Audit
    {
        publish(
            &ctx,
            &sfe,
            EventType::Normal,
            "Retained",
            "deletionPolicy Retain: Azure is left as it is",
        )
        .await;
        ctx.metrics.forget_endpoint(&ns, &sfe.name_any());
        return Ok(Action::await_change());
    }
    if !*ctx.is_leader.borrow() {
        return Err(Error::CleanupPending(
            "waiting for leadership".into(),
            Duration::from_secs(15),
        ));
    }
    let resolved = ctx.identities.resolve(&sfe).await.map_err(|s| {
        Error::CleanupPending(
            format!("cannot delete: {}", s.message),
            Duration::from_secs(60),
        )
    })?;
    let (d, arm) = (resolved.desired, resolved.arm);
    let observed = azure::observe(&arm, &d)
        .await
        .map_err(|e| Error::CleanupPending(format!("reading Azure: {e}"), backoff_for(&e)))?;
    let created = sfe
        .status
        .as_ref()
        .map(|s| s.created_resources.clone())
        .unwrap_or_default();
    let teardown = plan::teardown(&d, &observed, &created);
    if teardown.is_empty() {
        publish(
            &ctx,
            &sfe,
            EventType::Normal,
            "Deleted",
            "removed what fhirlock created or added",
        )
        .await;
        ctx.metrics.forget_endpoint(&ns, &sfe.name_any());
        return Ok(Action::await_change());
    }
    match azure::apply(&arm, &teardown.steps, |_| {}).await {
        Ok(Applied::Done { answers }) => Err(Error::CleanupPending(
            format!("{} removal(s) done, more to do", answers.len()),
            Duration::from_millis(500),
        )),
        Ok(Applied::Pending {
            operation, step, ..
        }) => {
            publish(
                &ctx,
                &sfe,
                EventType::Normal,
                "AzureDelete",
                &format!("{:?} {}", step.kind, step.resource_id),
            )
            .await;
            Err(Error::CleanupPending(
                format!("waiting for {:?}", step.kind),
                operation.next_poll_in(None),
            ))
        }
        Err((_, e)) => {
            publish(
                &ctx,
                &sfe,
                EventType::Warning,
                "CleanupFailed",
                &e.to_string(),
            )
            .await;
            Err(Error::CleanupPending(
                format!("cleanup failed: {e}"),
                backoff_for(&e),
            ))
        }
    }
}

/// When this reconcile was triggered by fhirlock's own status write, the time left until the
/// look it had already scheduled.
fn own_write_echo(ctx: &Context, sfe: &SecuredFhirEndpoint) -> Option<Duration> {
    let own = ctx.own_writes.lock().unwrap();
    let (rvs, next_at) = own.get(&key(sfe))?;
    let left = next_at.checked_duration_since(Instant::now())?;
    let rv = sfe.resource_version()?;
    rvs.contains(&rv).then_some(left)
}

/// The followup left by this endpoint's last writes, if it still applies: same generation, and
/// fresh. Taken, so it serves one reconcile only.
fn take_followup(ctx: &Context, sfe: &SecuredFhirEndpoint) -> Option<Followup> {
    let f = ctx.followups.lock().unwrap().remove(&key(sfe))?;
    (f.generation == sfe.meta().generation && Instant::now() < f.until).then_some(f)
}

fn remember_followup(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    d: &Desired,
    before: &Observed,
    applied: &Applied,
) {
    let (answers, operation) = match applied {
        Applied::Done { answers } => (answers, None),
        Applied::Pending { answers, step, .. } => (answers, Some(&step.resource_id)),
    };
    if answers.is_empty() && operation.is_none() {
        return;
    }
    let mut observed = before.clone();
    let mut reread = Vec::new();
    for a in answers {
        match (fhirlock_core::observed::slot(d, &a.resource_id), &a.body) {
            (Some(slot), Some(body)) => observed.absorb(&slot, Some(body.clone())),
            _ => reread.push(a.resource_id.clone()),
        }
    }
    reread.extend(operation.cloned());
    let f = Followup {
        generation: sfe.meta().generation,
        observed,
        reread,
        until: Instant::now() + ctx.settings.resync,
    };
    ctx.followups.lock().unwrap().insert(key(sfe), f);
}

fn remember_own_write(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    rv: Option<String>,
    mut earlier: Vec<String>,
    next: Duration,
) {
    let mut own = ctx.own_writes.lock().unwrap();
    match rv {
        Some(rv) => {
            earlier.push(rv);
            own.insert(key(sfe), (earlier, Instant::now() + next))
        }
        None => own.remove(&key(sfe)),
    };
}

/// Write-ahead for creations: subnets carry no tags, so `status.createdResources` is the only
/// record that fhirlock made them, and teardown deletes only what it lists. Recorded before the
/// PUT, so that a status write lost after it (an apiserver restart, a crash) cannot leave a
/// subnet behind at deletion (found by the soak's restart trials). Returns the write's
/// resourceVersion.
async fn record_creations(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    recorded: &[String],
    creating: &[String],
) -> Result<(Option<String>, Vec<String>), Error> {
    let api: Api<SecuredFhirEndpoint> =
        Api::namespaced(ctx.client.clone(), &sfe.namespace().unwrap_or_default());
    // The list as the apiserver has it now, not as this reconcile's (possibly stale) copy has it:
    // the merge patch replaces the whole list.
    let current = api.get_status(&sfe.name_any()).await?;
    let mut all = recorded.to_vec();
    let fresh = current
        .status
        .map(|s| s.created_resources)
        .unwrap_or_default();
    add_ids(&mut all, fresh.into_iter().chain(creating.iter().cloned()));
    let updated = api
        .patch_status(
            &sfe.name_any(),
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"status": {"createdResources": all}})),
        )
        .await?;
    Ok((updated.resource_version(), all))
}

/// Adds the resource IDs `ids` does not already hold (ARM compares IDs case-insensitively).
fn add_ids(list: &mut Vec<String>, ids: impl IntoIterator<Item = String>) {
    for id in ids {
        if !list.iter().any(|x| fhirlock_core::id::same(x, &id)) {
            list.push(id);
        }
    }
}

fn backoff_for(e: &ArmError) -> Duration {
    e.retry_after.unwrap_or(match e.class {
        ErrorClass::Throttled | ErrorClass::Transient | ErrorClass::Conflict => {
            Duration::from_secs(10)
        }
        ErrorClass::Terminal | ErrorClass::Auth => Duration::from_secs(120),
    })
}

/// A failed ARM call: transient classes back off per endpoint; terminal ones stall until the
/// spec, Azure or permissions change (and a resync looks again).
async fn arm_failure(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    d: &Desired,
    e: ArmError,
    started: Instant,
) -> Result<Action, Error> {
    match e.class {
        ErrorClass::Throttled | ErrorClass::Transient | ErrorClass::Conflict => {
            let n = {
                let mut f = ctx.failures.lock().unwrap();
                let n = f.entry(key(sfe)).or_default();
                *n += 1;
                *n
            };
            // Exponential per endpoint, never sooner than ARM asks, and jittered so that many
            // endpoints throttled together do not come back together (a retry storm otherwise:
            // benchmark B5).
            let backoff =
                Duration::from_secs(2u64.saturating_pow(n.min(8))).min(Duration::from_secs(300));
            let base = backoff
                .max(e.retry_after.unwrap_or_default())
                .max(Duration::from_secs(1));
            ctx.metrics.reconcile("error", started.elapsed());
            Ok(Action::requeue(base.mul_f64(rand::random_range(1.0..2.0))))
        }
        ErrorClass::Terminal | ErrorClass::Auth => {
            let reason = if e.class == ErrorClass::Auth {
                "AuthorizationFailed"
            } else {
                "AzureRejected"
            };
            let outcome = Outcome {
                terminal_error: Some((reason.into(), e.to_string())),
                ..Default::default()
            };
            report(ctx, sfe, Some(d), &outcome, Report::default()).await?;
            publish(ctx, sfe, EventType::Warning, reason, &e.to_string()).await;
            ctx.metrics.reconcile("stalled", started.elapsed());
            Ok(Action::requeue(jitter(ctx.settings.resync)))
        }
    }
}

/// Keeps fhirlock within its share of the subscription's write bucket, as ARM last reported it.
/// `None` when fhirlock may write now; otherwise how long until it may.
fn budget_wait(ctx: &Context, arm: &ArmClient, subscription: &str) -> Option<Duration> {
    let budget = arm.budget(subscription)?;
    // Only writes report the writes figure; reads keep observed_at fresh and must not hide its age.
    let age = budget
        .writes_observed_at
        .unwrap_or(budget.observed_at)
        .elapsed();
    let refill = ctx.settings.write_refill_per_second;
    gate(
        ctx.settings.budget_share,
        &ctx.write_capacity,
        subscription,
        (budget.writes?, ctx.settings.write_bucket_size),
        age,
        refill,
    )
}

/// As [`budget_wait`], for the read bucket (every GET reports it; Azure refills 25 per second).
fn read_wait(ctx: &Context, arm: &ArmClient, subscription: &str) -> Option<Duration> {
    let budget = arm.budget(subscription)?;
    let refill = ctx.settings.read_refill_per_second;
    gate(
        ctx.settings.budget_share,
        &ctx.read_capacity,
        subscription,
        (budget.reads?, ctx.settings.read_bucket_size),
        budget.observed_at.elapsed(),
        refill,
    )
}

/// Records the largest figure seen for this bucket (its size, as far as fhirlock can tell, but
/// never more than `size`, Azure's documented size) and asks [`bucket_wait`] whether fhirlock's
/// share allows a request now. Without that bound, one large figure (a raised limit, another
/// region's bucket) would set a floor the real bucket never reaches, and hold every endpoint
/// back for hours (benchmark B4 found it: 0 reads in 4 minutes after the bucket shrank).
fn gate(
    share: f64,
    caps: &Mutex<HashMap<String, u32>>,
    subscription: &str,
    (remaining, size): (u32, u32),
    age: Duration,
    refill: f64,
) -> Option<Duration> {
    let mut caps = caps.lock().unwrap();
    let cap = caps.entry(subscription.to_owned()).or_insert(remaining);
    *cap = (*cap).max(remaining);
    bucket_wait(remaining, age, (*cap).min(size), share, refill)
}

/// An ARM bucket as documented: it refills at `refill` per second up to its size. fhirlock
/// keeps its estimate of what is left above `(1 - share)` of the largest figure it has seen, and
/// says how long to wait when it is not.
fn bucket_wait(
    remaining: u32,
    age: Duration,
    capacity_seen: u32,
    share: f64,
    refill: f64,
) -> Option<Duration> {
    let floor = (capacity_seen as f64 * (1.0 - share)).floor();
    let estimate = (remaining as f64 + refill * age.as_secs_f64()).min(capacity_seen as f64);
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

fn operation_of(p: &PendingOperation) -> Operation {
    Operation {
        resource_id: p.resource_id.clone(),
        method: p.method.clone(),
        api_version: p.api_version.clone(),
        status_url: p.status_url.clone(),
        kind: match p.kind.as_str() {
            "Location" => OperationKind::Location,
            "ProvisioningState" => OperationKind::ProvisioningState,
            _ => OperationKind::AsyncOperation,
        },
        retry_after_secs: None,
    }
}

fn short(id: &str) -> String {
    fhirlock_core::id::ResourceId::parse(id)
        .map(|r| r.name().to_owned())
        .unwrap_or_else(|| id.to_owned())
}

fn finding_counts(f: &[posture::Finding]) -> Vec<(&'static str, i64)> {
    let mut out: Vec<(&'static str, i64)> = Vec::new();
    for x in f {
        match out.iter_mut().find(|(c, _)| *c == x.code) {
            Some((_, n)) => *n += 1,
            None => out.push((x.code, 1)),
        }
    }
    out
}

/// What this reconcile adds to status beyond the outcome.
#[derive(Default)]
struct Report {
    observed: Option<fhirlock_core::Observed>,
    pending: Option<PendingOperation>,
    drift: Option<Drift>,
    created: Vec<String>,
}

/// Status by server-side apply (field manager `fhirlock`). Conditions keep their
/// lastTransitionTime unless their status changes, so resyncs do not flap.
async fn report(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    d: Option<&Desired>,
    o: &Outcome,
    rep: Report,
) -> Result<Option<String>, Error> {
    let previous = sfe.status.clone().unwrap_or_default();
    let t = now();
    let conditions = status::conditions(o, sfe.meta().generation, &t, &previous.conditions);
    let findings: Vec<Finding> = o
        .findings
        .iter()
        .map(|f| Finding {
            code: f.code.to_owned(),
            severity: format!("{:?}", f.severity),
            resource_id: f.resource_id.clone(),
            message: f.message.clone(),
            since: previous
                .findings
                .iter()
                .find(|p| {
                    p.code == f.code && p.resource_id == f.resource_id && p.message == f.message
                })
                .and_then(|p| p.since.clone())
                .or_else(|| Some(t.clone())),
        })
        .collect();
    let gateway = rep
        .observed
        .as_ref()
        .and_then(|o| o.gateway())
        .map(|g| GatewayStatus {
            id: g.id.clone(),
            private_ip_address: g.private_ip(),
            provisioning_state: g.properties.provisioning_state.clone(),
        });
    let plan: Vec<PlannedChange> = if o.audit || !o.plan.is_empty() {
        o.plan
            .steps
            .iter()
            .flat_map(|s| {
                s.changes.iter().map(move |c| PlannedChange {
                    resource_id: s.resource_id.clone(),
                    field: c.path.clone(),
                    from: c
                        .from
                        .as_ref()
                        .map(|v| fhirlock_core::json::compact(v, 200)),
                    to: c.to.as_ref().map(|v| fhirlock_core::json::compact(v, 200)),
                    reason: s
                        .waiting_for
                        .as_ref()
                        .map(|w| format!("{} (after {w})", s.reason))
                        .unwrap_or_else(|| s.reason.clone()),
                })
            })
            .take(64)
            .collect()
    } else {
        Vec::new()
    };
    let mut created = previous.created_resources.clone();
    add_ids(&mut created, rep.created);
    let status = SecuredFhirEndpointStatus {
        observed_generation: sfe.meta().generation,
        conditions,
        gateway: gateway.or(previous.gateway.clone()),
        finding_count: Some(findings.len() as i32),
        findings: findings.into_iter().take(64).collect(),
        pending_operations: rep.pending.into_iter().collect(),
        plan,
        next_steps: d.map(|d| status::next_steps(d, None)).unwrap_or_default(),
        last_sync_time: Some(t),
        last_drift: rep.drift.or(previous.last_drift.clone()),
        created_resources: created,
    };
    let api: Api<SecuredFhirEndpoint> =
        Api::namespaced(ctx.client.clone(), &sfe.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "fhirlock.io/v1alpha1", "kind": "SecuredFhirEndpoint", "status": status});
    let updated = api
        .patch_status(
            &sfe.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(updated.resource_version())
}

/// The condition a step's component reports under.
fn component_of(kind: fhirlock_core::StepKind) -> &'static str {
    use fhirlock_core::StepKind::*;
    match kind {
        IntegrationSubnet | GatewaySubnet | DeleteSubnet => "SubnetsReady",
        Gateway | DeleteGateway => "GatewayReady",
        CosmosVnetRule | CosmosLockdown | RemoveCosmosVnetRule => "CosmosLocked",
        _ => "AppServiceLocked",
    }
}

async fn publish(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    publish_action(ctx, sfe, type_, reason, reason, note).await
}

/// Events with the same reason and action are aggregated into one series (showing the first
/// note), so the action names what was done, for example the step or the field.
async fn publish_action(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let ev = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: action.chars().take(120).collect(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &sfe.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_figure_once_seen_does_not_hold_fhirlock_back_for_good() {
        let caps = Mutex::new(HashMap::new());
        let s = Duration::from_secs;
        // A raised limit (or another region's bucket) reported a million; then Azure's 250.
        assert_eq!(gate(0.5, &caps, "sub", (999_000, 250), s(0), 25.0), None);
        assert_eq!(gate(0.5, &caps, "sub", (240, 250), s(0), 25.0), None);
        // Held back only below half of Azure's bucket, and only until it refills.
        assert_eq!(
            gate(0.5, &caps, "sub", (100, 250), s(0), 25.0),
            Some(Duration::from_secs_f64(1.04))
        );
        assert_eq!(gate(0.5, &caps, "sub", (100, 250), s(2), 25.0), None);
        // A bucket smaller than Azure's documented one is learnt from what ARM reports.
        let small = Mutex::new(HashMap::new());
        assert_eq!(gate(0.5, &small, "sub", (6, 200), s(0), 0.05), None);
        assert_eq!(gate(0.5, &small, "sub", (1, 200), s(0), 0.05), Some(s(60)));
    }

    #[test]
    fn the_budget_keeps_fhirlock_inside_its_share_of_a_refilling_bucket() {
        let s = Duration::from_secs;
        // (remaining, age, capacity seen, share, refill/s) -> wait
        let table = [
            (200, s(0), 200, 0.5, 10.0, None),
            (101, s(0), 200, 0.5, 10.0, None),
            (100, s(0), 200, 0.5, 10.0, Some(Duration::from_millis(500))),
            (100, s(1), 200, 0.5, 10.0, None),
            (1, s(0), 5, 0.5, 0.05, Some(s(40))),
            (1, s(20), 5, 0.5, 0.05, Some(s(20))),
            (1, s(40), 5, 0.5, 0.05, None),
            (0, s(0), 200, 1.0, 10.0, Some(Duration::from_millis(500))),
            (199, s(0), 200, 0.0, 10.0, Some(Duration::from_millis(500))),
            (
                199,
                s(3600),
                200,
                0.0,
                10.0,
                Some(Duration::from_millis(500)),
            ),
        ];
        for (remaining, age, cap, share, refill, want) in table {
            assert_eq!(
                bucket_wait(remaining, age, cap, share, refill),
                want,
                "{remaining} {age:?} {cap} {share} {refill}"
            );
        }
    }
}
