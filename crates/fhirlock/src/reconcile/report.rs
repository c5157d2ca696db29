//! **report**: tells Kubernetes and people what `decide` concluded. Status by server-side apply
//! (field manager `fhirlock`), Events, metrics. Kubernetes I/O only.

use std::time::{Duration, Instant};

use fhirlock_api::{FIELD_MANAGER, SecuredFhirEndpoint, SecuredFhirEndpointStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::decide::{self, Conclusion, Decision, Look, Note, OnFailure, Written};
use super::{Context, Error, Exit, key, still_leading};

/// Writes the whole status; returns the resourceVersion it got.
pub async fn write_status(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    status: &SecuredFhirEndpointStatus,
) -> Result<Option<String>, kube::Error> {
    let api: Api<SecuredFhirEndpoint> =
        Api::namespaced(ctx.client.clone(), &sfe.namespace().unwrap_or_default());
    let mut patch = json!({"apiVersion": "fhirlock.io/v1alpha1", "kind": "SecuredFhirEndpoint", "status": status});
    // Sent even when empty, so that fhirlock owns the list: a handle someone else patched into
    // status would otherwise never be cleared, and be dropped again on every pass.
    patch["status"]["pendingOperations"] = json!(status.pending_operations);
    let updated = api
        .patch_status(
            &sfe.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(updated.resource_version())
}

/// Publishes one Event; a failure to publish is logged, never fatal.
pub async fn publish(ctx: &Context, sfe: &SecuredFhirEndpoint, note: &Note) {
    let ev = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.to_owned(),
        note: Some(note.text.chars().take(1000).collect()),
        action: note.action.chars().take(120).collect(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &sfe.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event");
    }
}

pub async fn publish_all(ctx: &Context, sfe: &SecuredFhirEndpoint, notes: &[Note]) {
    for n in notes {
        publish(ctx, sfe, n).await;
    }
}

/// Events, metrics and status of a pass that got as far as deciding. Returns the status's
/// resourceVersion.
pub async fn conclusion(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    c: &Conclusion,
    complete: bool,
) -> Result<Option<String>, kube::Error> {
    publish_all(ctx, sfe, &c.notes).await;
    for id in &c.drift_corrected {
        ctx.metrics
            .drift_corrected(&fhirlock_arm::resource_type(id));
    }
    if complete {
        if let Some(t) = c.time_to_ready {
            ctx.metrics.time_to_ready(t.as_secs_f64());
        }
        let codes: Vec<(&str, &str, i64)> = c
            .findings_by_code
            .iter()
            .map(|(code, s, n)| (code.as_str(), s.as_str(), *n))
            .collect();
        ctx.metrics.set_endpoint(
            &sfe.namespace().unwrap_or_default(),
            &sfe.name_any(),
            c.ready,
            &codes,
        );
    }
    write_status(ctx, sfe, &c.status).await
}

/// A stalled endpoint: its status and its Event.
pub async fn stalled(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    status: &SecuredFhirEndpointStatus,
    note: &Note,
) -> Result<(), kube::Error> {
    write_status(ctx, sfe, status).await?;
    publish(ctx, sfe, note).await;
    Ok(())
}

/// Jittered ±10%, so endpoints created together do not resync together.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.9..1.1))
}

/// Spread over [d, 2d), so endpoints held back together do not come back together.
pub fn spread(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(1.0..2.0))
}

// ---- the stage, in the controller ----------------------------------------------------------

/// The stage: conclude, tell, remember, and say when to look again.
pub async fn stage(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    look: &Look<'_>,
    decision: Decision,
    (mut written, echoes): (Written, Vec<String>),
    started: Instant,
    health_poll: Option<Duration>,
) -> Result<Action, Exit> {
    let failed = written.failed.take();
    still_leading(ctx)?;
    let mut c = decide::conclude(
        look,
        decision,
        &written,
        jitter(ctx.settings.resync),
        &now(),
    );
    // A backend-health check in flight is read on the next pass, when its answer is due.
    c.requeue = health_poll.map_or(c.requeue, |p| c.requeue.min(p));
    let reachable = c
        .status
        .conditions
        .iter()
        .find(|x| x.type_ == fhirlock_core::reachable::REACHABLE)
        .map(|x| match x.status.as_str() {
            "True" => Some(true),
            "False" => Some(false),
            _ => None,
        });
    if let Some(r) = reachable {
        let ns = sfe.namespace().unwrap_or_default();
        ctx.metrics.set_reachable(&ns, &sfe.name_any(), r);
    }
    let rv = conclusion(ctx, sfe, &c, failed.is_none())
        .await
        .map_err(Exit::Kube)?;
    if let Some(e) = failed {
        return Err(Exit::Failed(e, Box::new(look.desired.clone())));
    }
    let next_at = Instant::now() + c.requeue;
    ctx.memory
        .endpoint(&key(sfe), |m| m.succeed(rv, echoes, next_at));
    ctx.metrics.reconcile(c.result.as_str(), started.elapsed());
    Ok(Action::requeue(c.requeue))
}

/// Says how a pass that ended early ended: a requeue, a stall, or a failed ARM call (backed
/// off per endpoint when retryable, a stall when not).
pub async fn exit(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    exit: Exit,
    started: Instant,
) -> Result<Action, Error> {
    let previous = sfe.status.clone().unwrap_or_default();
    let generation = sfe.metadata.generation;
    let (result, action) = match exit {
        Exit::Requeue(after, result) => (result, Action::requeue(after)),
        Exit::Kube(e) => return Err(Error::Kube(e)),
        Exit::Stalled(_) | Exit::Failed(..) if !ctx.leader.may_act() => {
            (None, Action::requeue(Duration::from_secs(15)))
        }
        Exit::Stalled(s) => {
            let (status, note) =
                decide::stalled(s.reason, &s.message, None, &previous, generation, &now());
            stalled(ctx, sfe, &status, &note).await?;
            set_not_ready(ctx, sfe);
            (Some(decide::Result::Stalled), Action::await_change())
        }
        Exit::Failed(e, d) => {
            match decide::on_failure(&e, Some(&d), &previous, generation, &now()) {
                OnFailure::Retry => {
                    let backoff = ctx.memory.endpoint(&key(sfe), |m| m.fail(e.retry_after));
                    (
                        Some(decide::Result::Error),
                        Action::requeue(spread(backoff)),
                    )
                }
                OnFailure::Stall { status, note } => {
                    stalled(ctx, sfe, &status, &note).await?;
                    set_not_ready(ctx, sfe);
                    let again = Action::requeue(jitter(ctx.settings.resync));
                    (Some(decide::Result::Stalled), again)
                }
            }
        }
    };
    if let Some(r) = result {
        ctx.metrics.reconcile(r.as_str(), started.elapsed());
    }
    Ok(action)
}

/// A stalled endpoint is not Ready, whatever it was: `FhirlockEndpointNotReady` must fire when,
/// say, its client secret expires.
fn set_not_ready(ctx: &Context, sfe: &SecuredFhirEndpoint) {
    let ns = sfe.namespace().unwrap_or_default();
    ctx.metrics.set_ready(&ns, &sfe.name_any(), false);
}

fn now() -> Time {
    Time(Timestamp::now())
}
