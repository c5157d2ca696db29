//! **apply**: the writes `decide` chose, in order, stopping at the first long-running operation
//! (its handle goes to status; a worker never waits on one). ARM I/O, plus the write-ahead
//! record of creations in status.

use std::time::{Duration, Instant};

use fhirlock_api::{FIELD_MANAGER, SecuredFhirEndpoint};
use fhirlock_arm::{ArmClient, ArmError, Operation, Precondition, WriteOutcome};
use fhirlock_core::plan::{self, Method, Step};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::decide::{Decision, Written, add_ids};
use super::memory::{Bucket, BudgetRule, Followup};
use super::observe::{self, Seen};
use super::resolve::Resolved;
use super::{Context, Exit, key, still_leading};

/// What ARM answered to one write that finished at once: the resource as it now is (`None` when
/// the answer carried no body).
#[derive(Debug)]
pub struct Answer {
    pub resource_id: String,
    pub body: Option<Value>,
}

/// What one pass of writes did.
#[derive(Debug)]
pub enum Applied {
    /// Every step finished synchronously.
    Done { answers: Vec<Answer> },
    /// `before_write` said no (leadership lost): the writes before stand, nothing more was sent.
    Stopped { answers: Vec<Answer> },
    /// A step started a long-running operation; nothing else runs until it ends, which also
    /// serialises writes to one VNet.
    Pending {
        answers: Vec<Answer>,
        operation: Box<Operation>,
        step: Box<Step>,
    },
}

impl Applied {
    /// Writes sent, the one that started an operation included.
    pub fn writes(&self) -> usize {
        match self {
            Applied::Done { answers } | Applied::Stopped { answers } => answers.len(),
            Applied::Pending { answers, .. } => answers.len() + 1,
        }
    }

    pub fn answers(&self) -> &[Answer] {
        match self {
            Applied::Done { answers }
            | Applied::Stopped { answers }
            | Applied::Pending { answers, .. } => answers,
        }
    }
}

/// Runs `steps` (all ready) in order, stopping at the first long-running operation, or before a
/// write `before_write` refuses. On an error, also says how many writes went through before it.
pub async fn run(
    arm: &ArmClient,
    steps: &[Step],
    mut before_write: impl FnMut(&Step) -> bool,
) -> Result<Applied, (usize, ArmError)> {
    let mut answers = Vec::new();
    for step in steps {
        if !before_write(step) {
            return Ok(Applied::Stopped { answers });
        }
        // If-Match / If-None-Match, as the planner chose them: a 412 is a Conflict, and the next
        // pass reads everything again (no followup is kept after a failed write).
        let pre = step.precondition.as_ref().map(|p| match p {
            plan::Precondition::IfMatch(etag) => Precondition::IfMatch(etag.clone()),
            plan::Precondition::IfNoneMatch => Precondition::IfNoneMatch,
        });
        let (id, api, pre) = (&step.resource_id, &step.api_version, pre.as_ref());
        let outcome = match step.method {
            Method::Put => arm.put_with(id, api, &step.body, pre).await,
            Method::Patch => arm.patch_with(id, api, &step.body, pre).await,
            Method::Delete => arm.delete_with(id, api, pre).await,
        }
        .map_err(|e| (answers.len(), e))?;
        match outcome {
            WriteOutcome::Done { body, .. } => answers.push(Answer {
                resource_id: step.resource_id.clone(),
                body,
            }),
            WriteOutcome::Accepted(operation) => {
                return Ok(Applied::Pending {
                    answers,
                    operation: Box::new(operation),
                    step: Box::new(step.clone()),
                });
            }
        }
    }
    Ok(Applied::Done { answers })
}

/// The write-ahead: adds `creating` to `status.createdResources` before the PUTs. Added to the
/// list the apiserver has now, not this reconcile's possibly stale copy, since the merge patch
/// replaces the whole list: a stale copy could bring back a resource fhirlock has deleted and
/// dropped from the list since. Returns the write's resourceVersion and the list as written.
pub async fn record_creations(
    client: &kube::Client,
    sfe: &SecuredFhirEndpoint,
    creating: &[String],
) -> Result<(Option<String>, Vec<String>), kube::Error> {
    let api: Api<SecuredFhirEndpoint> =
        Api::namespaced(client.clone(), &sfe.namespace().unwrap_or_default());
    let current = api.get_status(&sfe.name_any()).await?;
    let mut all = current
        .status
        .map(|s| s.created_resources)
        .unwrap_or_default();
    add_ids(&mut all, creating.iter().cloned());
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

// ---- the stage, in the controller ----------------------------------------------------------

/// The stage: the write-ahead, then the writes. Returns what was written and the
/// resourceVersions of the status writes it made (they will echo back through the watch).
pub async fn stage(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    r: &Resolved,
    seen: &Seen,
    decision: &Decision,
) -> Result<(Written, Vec<String>), Exit> {
    let mut written = Written::default();
    let mut echoes = Vec::new();
    let Some(writes) = &decision.writes else {
        if decision.deferred.is_some() {
            ctx.metrics.deferred_writes(&r.desired.subscription);
            tracing::info!(subscription = %r.desired.subscription, budget = ?r.arm.budget(&r.desired.subscription), "writes deferred to stay within the ARM budget share");
        }
        return Ok((written, echoes));
    };
    if !writes.record_first.is_empty() {
        still_leading(ctx)?;
        let (rv, all) = record_creations(&ctx.client, sfe, &writes.record_first)
            .await
            .map_err(Exit::Kube)?;
        echoes.extend(rv);
        written.created = all;
    }
    match run(&r.arm, &writes.steps, |_| ctx.leader.may_act()).await {
        Ok(Applied::Stopped { .. }) => {
            // What was written is seen at the next full read, by whoever leads then.
            ctx.memory.endpoint(&key(sfe), |m| m.followup = None);
            return Err(Exit::Requeue(Duration::from_secs(15), None));
        }
        Ok(applied) => {
            written.count = applied.writes();
            let operation = match &applied {
                Applied::Done { .. } | Applied::Stopped { .. } => None,
                Applied::Pending { step, .. } => Some(step.resource_id.as_str()),
            };
            let after =
                observe::after_writes(&r.desired, &seen.observed, applied.answers(), operation);
            if let Some((observed, reread)) = after {
                let followup = Followup {
                    generation: sfe.metadata.generation,
                    observed,
                    reread,
                    until: Instant::now() + ctx.settings.resync,
                };
                ctx.memory
                    .endpoint(&key(sfe), |m| m.followup = Some(followup));
            }
            if let Applied::Pending {
                operation, step, ..
            } = applied
            {
                written.pending = Some((*operation, step.kind));
            }
        }
        Err((count, e)) => {
            written.count = count;
            written.failed = Some(e);
        }
    }
    Ok((written, echoes))
}

/// Keeps fhirlock within its share of the subscription's write bucket, as ARM last reported it.
/// `None` when fhirlock may write now; otherwise how long until it may.
pub fn write_wait(ctx: &Context, r: &Resolved) -> Option<Duration> {
    let subscription = &r.desired.subscription;
    let budget = r.arm.budget(subscription)?;
    // Only writes report the writes figure; reads keep observed_at fresh and must not hide its age.
    let age = budget
        .writes_observed_at
        .unwrap_or(budget.observed_at)
        .elapsed();
    let s = &ctx.settings;
    let rule = BudgetRule {
        share: s.budget_share,
        refill: s.write_refill_per_second,
        size: s.write_bucket_size,
    };
    ctx.memory
        .bucket_wait(subscription, Bucket::Writes, budget.writes?, age, rule)
}
