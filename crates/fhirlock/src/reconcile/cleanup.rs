//! Deletion: with deletionPolicy Delete, remove what fhirlock created or added, one
//! long-running operation at a time, then let the finalizer go. Retain (and Audit mode, which
//! never wrote) leaves Azure as it is.

use std::time::Duration;

use fhirlock_api::SecuredFhirEndpoint;
use fhirlock_api::v1alpha1::{DeletionPolicy, Mode};
use fhirlock_arm::{ArmError, ErrorClass};
use fhirlock_core::plan;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::apply::{self, Applied};
use super::decide::Note;
use super::report::publish;
use super::{Context, Error, finalizer, key, observe};

/// One look at the teardown; the finalizer goes once nothing is left to remove.
pub async fn run(ctx: &Context, sfe: &SecuredFhirEndpoint) -> Result<Action, Error> {
    match teardown(ctx, sfe).await {
        Ok(()) => {
            ctx.metrics
                .forget_endpoint(&sfe.namespace().unwrap_or_default(), &sfe.name_any());
            ctx.memory.forget(&key(sfe));
            if !ctx.leader.may_act() {
                return Ok(Action::requeue(Duration::from_secs(15)));
            }
            finalizer::release(ctx, sfe).await?;
            Ok(Action::await_change())
        }
        Err((why, after)) => {
            tracing::info!(%why, "cleanup in progress");
            Ok(Action::requeue(after))
        }
    }
}

/// `Ok` when nothing is left to remove; otherwise why not yet, and when to look again.
async fn teardown(ctx: &Context, sfe: &SecuredFhirEndpoint) -> Result<(), (String, Duration)> {
    if sfe.spec.deletion_policy == DeletionPolicy::Retain || sfe.spec.mode == Mode::Audit {
        let note = "deletionPolicy Retain: Azure is left as it is";
        publish(ctx, sfe, &Note::normal("Retained", "Retained", note)).await;
        return Ok(());
    }
    if !ctx.leader.may_act() {
        return Err(("waiting for leadership".into(), Duration::from_secs(15)));
    }
    let resolved = ctx.identities.resolve(sfe).await.map_err(|s| {
        let why = format!("cannot delete: {}", s.message);
        (why, Duration::from_secs(60))
    })?;
    let (d, arm) = (resolved.desired, resolved.arm);
    let observed = observe::read_for_teardown(&arm, &d)
        .await
        .map_err(|e| (format!("reading Azure: {e}"), backoff_for(&e)))?;
    let created = sfe
        .status
        .as_ref()
        .map(|s| s.created_resources.clone())
        .unwrap_or_default();
    let teardown = plan::teardown(&d, &observed, &created);
    if teardown.is_empty() {
        // Safe, but the FHIR API goes dark: nothing else may reach the site or the database.
        let note = Note::warning(
            "Deleted",
            "Deleted",
            "removed what fhirlock created or added; the App Service and Cosmos DB stay closed to everything, so the FHIR API is unreachable until another gateway is admitted",
        );
        publish(ctx, sfe, &note).await;
        return Ok(());
    }
    let ready: Vec<_> = teardown.steps.into_iter().filter(|s| s.ready()).collect();
    match apply::run(&arm, &ready, |_| ctx.leader.may_act()).await {
        Ok(Applied::Stopped { .. }) => Err(("leadership lost".into(), Duration::from_secs(15))),
        Ok(Applied::Done { answers }) => Err((
            format!("{} removal(s) done, more to do", answers.len()),
            Duration::from_millis(500),
        )),
        Ok(Applied::Pending {
            operation, step, ..
        }) => {
            let text = format!("{} {}", step.kind, step.resource_id);
            publish(ctx, sfe, &Note::normal("AzureDelete", "AzureDelete", text)).await;
            Err((
                format!("waiting for {}", step.kind),
                operation.next_poll_in(None),
            ))
        }
        Err((_, e)) => {
            let note = Note::warning("CleanupFailed", "CleanupFailed", e.to_string());
            publish(ctx, sfe, &note).await;
            Err((format!("cleanup failed: {e}"), backoff_for(&e)))
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
