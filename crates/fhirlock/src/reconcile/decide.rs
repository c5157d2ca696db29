//! **decide**: everything one reconcile concludes, as plain functions of values. No async, no
//! I/O, no clock and no randomness: the shell passes the time, the jittered resync and the gates'
//! answers in, and carries out what comes back (the writes, the status, the Events, the
//! requeue). `fhirlock run` and the one-shot `fhirlock apply` both go through here, so the Audit
//! rule, the write-ahead rule and the drift rule are written once.

use std::time::Duration;

use fhirlock_api::v1alpha1::{
    Drift, Finding, GatewayStatus, PendingOperation, PlannedChange, SecuredFhirEndpointStatus,
};
use fhirlock_arm::{ArmError, ErrorClass, Operation, OperationKind, OperationStatus};
use fhirlock_core::json::FieldChange;
use fhirlock_core::plan::host_name;
use fhirlock_core::posture::{FindingCode, Severity};
use fhirlock_core::status::{self, Assessment};
use fhirlock_core::{Component, Desired, Step, StepKind, id};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// An Event to publish, as data. Events with the same reason and action are aggregated into one
/// series (showing the first note), so the action names what was done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub action: String,
    pub text: String,
}

impl Note {
    pub fn normal(
        reason: &'static str,
        action: impl Into<String>,
        text: impl Into<String>,
    ) -> Note {
        Note {
            warning: false,
            reason,
            action: action.into(),
            text: text.into(),
        }
    }
    pub fn warning(
        reason: &'static str,
        action: impl Into<String>,
        text: impl Into<String>,
    ) -> Note {
        Note {
            warning: true,
            ..Note::normal(reason, action, text)
        }
    }
}

/// How a reconcile ended, as the `fhirlock_reconciles_total` metric labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Result {
    Ok,
    Error,
    Stalled,
}

impl Result {
    pub fn as_str(self) -> &'static str {
        match self {
            Result::Ok => "ok",
            Result::Error => "error",
            Result::Stalled => "stalled",
        }
    }
}

// ---- before observing ----------------------------------------------------------------------

/// What to do with the long-running operation status holds, after one poll of it.
#[derive(Debug, PartialEq)]
pub enum AfterPoll {
    /// Still running: poll again then.
    Running(Duration),
    /// The poll failed in a way worth retrying: try again then.
    Retry(Duration),
    /// It ended: say so, and observe.
    Ended(Note),
    /// The handle no longer resolves (expired, or not an operation): drop what the last writes
    /// taught and observe afresh.
    Lost,
    /// ARM does not know the operation (404 on its status URL, `OperationNotFound`): as
    /// [`AfterPoll::Lost`], in the same pass, and say so, since whatever it was doing is now
    /// judged only by what Azure holds.
    Dropped(Note),
}

pub fn after_poll(
    p: &PendingOperation,
    polled: std::result::Result<OperationStatus, ArmError>,
) -> AfterPoll {
    match polled {
        Ok(OperationStatus::InProgress { retry_after }) => {
            AfterPoll::Running(retry_after.unwrap_or_else(|| operation_of(p).next_poll_in(None)))
        }
        Ok(OperationStatus::Succeeded) => AfterPoll::Ended(Note::normal(
            "OperationSucceeded",
            &p.step,
            format!("{} on {} finished", p.step, p.resource_id),
        )),
        Ok(OperationStatus::Failed(e)) => AfterPoll::Ended(Note::warning(
            "OperationFailed",
            &p.step,
            format!("{} on {} failed: {}", p.step, p.resource_id, e),
        )),
        Err(e) if e.class.is_retryable() => {
            AfterPoll::Retry(e.retry_after.unwrap_or(Duration::from_secs(10)))
        }
        Err(e) if e.is_not_found() => AfterPoll::Dropped(Note::warning(
            "OperationDropped",
            "OperationDropped",
            format!(
                "the operation recorded in status ({} on {}) is not found in Azure ({}): looking at Azure afresh",
                p.step, p.resource_id, e.code
            ),
        )),
        Err(_) => AfterPoll::Lost,
    }
}

/// The longest fhirlock waits on one long-running operation before it stops polling the handle
/// and looks at Azure afresh. Application Gateway operations, the slowest fhirlock starts, take
/// minutes; an hour covers them with room to spare [U: Azure documents no upper bound]. Without
/// a bound, a handle that answers 404 (ARM reports a just-created operation as not found for a
/// moment, so 404 reads as "still running") would be polled for ever, and nothing else observed.
pub const MAX_OPERATION_AGE: Duration = Duration::from_secs(3600);

/// Whether the operation status records may be polled at all: it must act on one of this
/// endpoint's own resources, with a write method, poll a URL in the endpoint's subscription (the
/// ARM client also refuses any host but ARM's), and be younger than [`MAX_OPERATION_AGE`].
/// Anyone who may patch `/status` could otherwise make fhirlock GET any ARM URL with the
/// namespace's identity. `Some` is the Event that says why the handle is dropped.
pub fn reject_pending(p: &PendingOperation, d: &Desired, now: Timestamp) -> Option<Note> {
    let own = [
        d.gateway_subnet.id.as_str(),
        d.integration_subnet.id.as_str(),
        d.gateway.id.as_str(),
        d.site_id.as_str(),
        &d.site_config_id(),
        d.cosmos_id.as_str(),
    ]
    .iter()
    .any(|x| id::same(x, &p.resource_id));
    let method = ["PUT", "PATCH", "DELETE"].contains(&p.method.as_str());
    let prefix = format!("/subscriptions/{}/", d.subscription).to_ascii_lowercase();
    let in_subscription =
        url_path(&p.status_url).is_some_and(|path| path.to_ascii_lowercase().starts_with(&prefix));
    let why = if !own {
        format!("{} is not one of this endpoint's resources", p.resource_id)
    } else if !method {
        format!("{:?} is not a write method", p.method)
    } else if !in_subscription {
        format!("its status URL is not in subscription {}", d.subscription)
    } else {
        let age = p
            .started
            .as_ref()
            .map(|t| now.duration_since(t.0).unsigned_abs());
        match age {
            Some(age) if age <= MAX_OPERATION_AGE => return None,
            Some(age) => format!(
                "it has run for {}s, longer than fhirlock waits",
                age.as_secs()
            ),
            None => "it has no start time".to_owned(),
        }
    };
    Some(Note::warning(
        "OperationDropped",
        "OperationDropped",
        format!(
            "not polling the operation recorded in status ({} on {}): {why}; looking at Azure afresh",
            p.step, p.resource_id
        ),
    ))
}

/// The path of an absolute URL (`https://host/path?query`), without parsing anything else.
fn url_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let path = &rest[rest.find('/')?..];
    Some(path.split(['?', '#']).next().unwrap_or(path))
}

/// The operation handle status recorded, as the ARM client polls it.
pub fn operation_of(p: &PendingOperation) -> Operation {
    Operation {
        resource_id: p.resource_id.clone(),
        method: p.method.clone(),
        api_version: p.api_version.clone(),
        status_url: p.status_url.clone(),
        kind: serde_json::from_value(serde_json::Value::String(p.kind.clone()))
            .unwrap_or(OperationKind::AsyncOperation),
        retry_after_secs: None,
    }
}

/// Whether a partial look (right after fhirlock's own writes) is enough to act on: only when it
/// leads to a next write. Anything else, "nothing left to do" included, is judged on a full read.
pub fn partial_look_suffices(assessment: &Assessment) -> bool {
    assessment.preflight.is_empty() && assessment.plan.steps.iter().any(Step::ready)
}

// ---- deciding the writes -------------------------------------------------------------------

/// What one look at Azure found, with what the endpoint's status said before.
#[derive(Debug)]
pub struct Look<'a> {
    pub desired: &'a Desired,
    pub assessment: Assessment,
    /// The gateway as observed (kept from the previous status when not observed).
    pub gateway: Option<GatewayStatus>,
    pub previous: &'a SecuredFhirEndpointStatus,
    pub generation: Option<i64>,
    /// When the endpoint was created (for the first time-to-Ready).
    pub created: Option<Time>,
}

/// The writes of one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Writes {
    /// The ready steps, in order; the pass stops at the first long-running operation.
    pub steps: Vec<Step>,
    /// Resources the steps create that status does not list yet. They are recorded before the
    /// PUT: subnets carry no tags, so `status.createdResources` is the only record that fhirlock
    /// made them, and a status write lost after the PUT must not turn one into "adopted".
    pub record_first: Vec<String>,
    /// Changes to components that had converged: someone changed Azure.
    pub drift: Vec<(String, FieldChange)>,
}

/// What to do before any write.
#[derive(Debug)]
pub struct Decision {
    pub assessment: Assessment,
    /// `None`: no write this pass (Audit, a failed pre-flight, nothing to do, or deferred).
    pub writes: Option<Writes>,
    /// Writes deferred to stay within the subscription's write budget, until then.
    pub deferred: Option<Duration>,
    pub notes: Vec<Note>,
}

/// The gates and the writes. `write_wait` is the write budget's answer (`None`: may write now).
pub fn decide(look: &Look, write_wait: Option<Duration>) -> Decision {
    let mut assessment = look.assessment.clone();
    let mut notes = Vec::new();
    if let Some(f) = assessment.preflight.first() {
        notes.push(Note::warning(
            "PreflightFailed",
            "PreflightFailed",
            format!("{}: {}", f.code, f.message),
        ));
    }
    let wants_writes =
        assessment.preflight.is_empty() && !assessment.audit && !assessment.plan.is_empty();
    if !wants_writes {
        return Decision {
            assessment,
            writes: None,
            deferred: None,
            notes,
        };
    }
    if let Some(wait) = write_wait {
        assessment.throttled = true;
        return Decision {
            assessment,
            writes: None,
            deferred: Some(wait),
            notes,
        };
    }
    let steps: Vec<Step> = assessment
        .plan
        .steps
        .iter()
        .filter(|s| s.ready())
        .cloned()
        .collect();
    let record_first = steps
        .iter()
        .filter(|s| s.creates)
        .map(|s| s.resource_id.clone())
        .filter(|created| {
            !look
                .previous
                .created_resources
                .iter()
                .any(|x| id::same(x, created))
        })
        .collect();
    let drift = assessment.plan.drift(&converged(look.previous));
    Decision {
        assessment,
        writes: Some(Writes {
            steps,
            record_first,
            drift,
        }),
        deferred: None,
        notes,
    }
}

/// The components whose condition was True: a change to one of them is drift, not the first
/// convergence.
fn converged(previous: &SecuredFhirEndpointStatus) -> Vec<Component> {
    Component::ALL
        .into_iter()
        .filter(|c| {
            previous
                .conditions
                .iter()
                .any(|x| x.type_ == c.condition_type() && x.status == "True")
        })
        .collect()
}

// ---- after the writes ----------------------------------------------------------------------

/// What the apply stage did.
#[derive(Debug, Default)]
pub struct Written {
    /// Writes ARM accepted, the one that started an operation included.
    pub count: usize,
    /// The long-running operation the pass stopped at.
    pub pending: Option<(Operation, StepKind)>,
    /// `status.createdResources` after the write-ahead (empty when nothing was recorded).
    pub created: Vec<String>,
    /// The write that failed, if one did (the writes before it count).
    pub failed: Option<ArmError>,
}

/// Everything the report stage does.
#[derive(Debug)]
pub struct Conclusion {
    pub status: SecuredFhirEndpointStatus,
    pub notes: Vec<Note>,
    /// When to look again (when the pass did not fail).
    pub requeue: Duration,
    /// Ready now: no pre-flight failure, nothing to do, Enforce, only advisory findings.
    pub ready: bool,
    /// Ready now and not before.
    pub became_ready: bool,
    /// When `became_ready`: how long it was not Ready, from the moment Ready went False (a spec
    /// change, drift) or, for a new endpoint, from its creation.
    pub time_to_ready: Option<Duration>,
    /// Resources written back after drift.
    pub drift_corrected: Vec<String>,
    /// Findings by code, with the code's severity.
    pub findings_by_code: Vec<(FindingCode, Severity, i64)>,
    pub result: Result,
}

/// The conclusion of one pass: status, Events, metrics and the next look. `resync` is the
/// jittered resync period, `now` the time stamped on status.
pub fn conclude(
    look: &Look,
    decision: Decision,
    written: &Written,
    resync: Duration,
    now: &Time,
) -> Conclusion {
    let mut assessment = decision.assessment;
    let mut notes = decision.notes;
    let mut drift = None;
    let mut drift_corrected = Vec::new();
    let mut pending = None;
    let mut requeue = decision.deferred.unwrap_or(resync);
    if let Some(writes) = &decision.writes {
        let done = &writes.steps[..written.count.min(writes.steps.len())];
        for s in done {
            notes.push(Note::normal(
                "AzureWrite",
                s.kind.as_str(),
                format!("{} {} {}", s.kind, s.method, s.resource_id),
            ));
        }
        let corrected: Vec<_> = writes
            .drift
            .iter()
            .filter(|(id, _)| done.iter().any(|s| &s.resource_id == id))
            .collect();
        let fields: Vec<String> = corrected
            .iter()
            .map(|(id, c)| format!("{}: {c}", short(id)))
            .collect();
        for ((id, c), f) in corrected.iter().zip(&fields) {
            notes.push(Note::normal("DriftCorrected", &c.path, f));
            drift_corrected.push(id.clone());
        }
        if !fields.is_empty() {
            drift = Some(Drift {
                time: now.clone(),
                fields: fields.into_iter().take(64).collect(),
            });
        }
        requeue = if let Some((op, step)) = &written.pending {
            assessment.operation_pending = true;
            pending = Some(PendingOperation {
                resource_id: op.resource_id.clone(),
                step: step.as_str().to_owned(),
                method: op.method.clone(),
                api_version: op.api_version.clone(),
                status_url: op.status_url.clone(),
                kind: kind_name(op.kind),
                started: Some(now.clone()),
            });
            op.next_poll_in(None)
        } else if written.count > 0 {
            Duration::from_millis(500)
        } else {
            idle(assessment.wait_ends, now, resync)
        };
    }
    let ready = assessment.preflight.is_empty()
        && assessment.plan.is_empty()
        && !assessment.audit
        && assessment.findings.iter().all(|f| !f.is_blocking());
    let was_ready = look
        .previous
        .conditions
        .iter()
        .any(|c| c.type_ == status::READY && c.status == "True");
    let became_ready = ready && !was_ready && written.failed.is_none();
    let not_ready_since = look
        .previous
        .conditions
        .iter()
        .find(|c| c.type_ == status::READY && c.status == "False")
        .map(|c| &c.last_transition_time)
        .or(look.created.as_ref());
    let time_to_ready = not_ready_since
        .filter(|_| became_ready)
        .map(|since| now.0.duration_since(since.0).unsigned_abs());
    if became_ready {
        notes.push(Note::normal(
            "Secured",
            "Secured",
            "only the gateway reaches the FHIR API",
        ));
    }
    let extras = Extras {
        gateway: look.gateway.clone(),
        pending,
        drift,
        created: written.created.clone(),
    };
    Conclusion {
        status: status_of(
            &assessment,
            look.previous,
            look.generation,
            Some(look.desired),
            extras,
            now,
        ),
        findings_by_code: finding_counts(&assessment),
        result: if assessment.preflight.is_empty() {
            Result::Ok
        } else {
            Result::Stalled
        },
        notes,
        requeue,
        ready,
        became_ready,
        time_to_ready,
        drift_corrected,
    }
}

/// When to look again after a pass that wrote nothing: in 5 s, or, when the plan waits for a
/// Cosmos DB firewall change to arrive (up to 15 minutes), when that wait ends (within the resync).
fn idle(wait_ends: Option<Timestamp>, now: &Time, resync: Duration) -> Duration {
    let Some(at) = wait_ends else {
        return Duration::from_secs(5);
    };
    let left = at.duration_since(now.0);
    let left = if left.is_negative() {
        Duration::ZERO
    } else {
        left.unsigned_abs()
    };
    left.clamp(Duration::from_secs(1), resync.max(Duration::from_secs(1)))
}

/// What a failed ARM call means for the endpoint.
#[derive(Debug, PartialEq)]
pub enum OnFailure {
    /// Throttled, transient or a conflict: back off and try again.
    Retry,
    /// Refused for good until the spec, Azure or permissions change: stall with this status and
    /// Event (a resync looks again).
    Stall {
        status: Box<SecuredFhirEndpointStatus>,
        note: Note,
    },
}

pub fn on_failure(
    e: &ArmError,
    desired: Option<&Desired>,
    previous: &SecuredFhirEndpointStatus,
    generation: Option<i64>,
    now: &Time,
) -> OnFailure {
    let reason = match e.class {
        ErrorClass::Throttled | ErrorClass::Transient | ErrorClass::Conflict => {
            return OnFailure::Retry;
        }
        ErrorClass::Auth => "AuthorizationFailed",
        ErrorClass::Terminal if host_name::is_verification_failure(&e.message) => {
            "HostNameNotVerified"
        }
        ErrorClass::Terminal => "AzureRejected",
    };
    let message = match (reason, desired) {
        ("HostNameNotVerified", Some(d)) => format!(
            "Azure has not verified {} for the App Service: ask for the DNS TXT record in status.nextSteps; fhirlock tries the binding again at the next resync (Azure: {e})",
            d.gateway.host_name
        ),
        _ => e.to_string(),
    };
    let (status, note) = stalled(reason, &message, desired, previous, generation, now);
    OnFailure::Stall {
        status: Box::new(status),
        note,
    }
}

/// The status and Event of an endpoint that cannot proceed, for `reason`.
pub fn stalled(
    reason: &'static str,
    message: &str,
    desired: Option<&Desired>,
    previous: &SecuredFhirEndpointStatus,
    generation: Option<i64>,
    now: &Time,
) -> (SecuredFhirEndpointStatus, Note) {
    let assessment = Assessment {
        terminal_error: Some((reason.to_owned(), message.to_owned())),
        ..Default::default()
    };
    let mut status = status_of(
        &assessment,
        previous,
        generation,
        desired,
        Extras::default(),
        now,
    );
    // Azure was not read to the end: the findings stay as last observed, not "none", and so do
    // next steps that came from a look (the DNS record a host-name binding waits for).
    status.findings = previous.findings.clone();
    status.finding_count = previous.finding_count;
    if desired.is_some() && previous.next_steps.len() > status.next_steps.len() {
        status.next_steps = previous.next_steps.clone();
    }
    (status, Note::warning(reason, reason, message))
}

/// What a pass adds to status beyond the assessment.
#[derive(Debug, Default)]
pub struct Extras {
    pub gateway: Option<GatewayStatus>,
    pub pending: Option<PendingOperation>,
    pub drift: Option<Drift>,
    pub created: Vec<String>,
}

/// The whole status for an assessment. Conditions keep their lastTransitionTime unless their status
/// changes, and a finding keeps its `since`, so resyncs do not flap.
pub fn status_of(
    o: &Assessment,
    previous: &SecuredFhirEndpointStatus,
    generation: Option<i64>,
    desired: Option<&Desired>,
    extras: Extras,
    now: &Time,
) -> SecuredFhirEndpointStatus {
    let conditions = status::conditions(o, generation, now, &previous.conditions);
    let findings: Vec<Finding> = o
        .findings
        .iter()
        .map(|f| Finding {
            code: f.code.as_str().to_owned(),
            severity: f.severity.as_str().to_owned(),
            resource_id: f.resource_id.clone(),
            message: f.message.clone(),
            since: previous
                .findings
                .iter()
                .find(|p| {
                    p.code == f.code.as_str()
                        && p.resource_id == f.resource_id
                        && p.message == f.message
                })
                .and_then(|p| p.since.clone())
                .or_else(|| Some(now.clone())),
        })
        .collect();
    let created = created_resources(&previous.created_resources, &o.gone, extras.created);
    SecuredFhirEndpointStatus {
        observed_generation: generation,
        conditions,
        gateway: extras.gateway.or(previous.gateway.clone()),
        finding_count: Some(o.findings.iter().filter(|f| f.is_blocking()).count() as i32),
        findings: findings.into_iter().take(64).collect(),
        pending_operations: extras.pending.into_iter().collect(),
        plan: planned_changes(o),
        next_steps: desired
            .map(|d| {
                let mut steps = status::next_steps(d, None);
                if let Some(record) = &o.host_verification {
                    steps.insert(0, status::verification_step(d, record));
                }
                steps
            })
            .unwrap_or_default(),
        last_sync_time: Some(now.clone()),
        last_drift: extras.drift.or(previous.last_drift.clone()),
        created_resources: created,
        cosmos_rule_since: o.cosmos_rule_since.map(Time),
    }
}

/// The plan as status shows it: in Audit mode, and whenever changes remain.
fn planned_changes(o: &Assessment) -> Vec<PlannedChange> {
    if !o.audit && o.plan.is_empty() {
        return Vec::new();
    }
    let compact = |v: &serde_json::Value| fhirlock_core::json::compact(v, 200);
    o.plan
        .steps
        .iter()
        .flat_map(|s| {
            s.changes.iter().map(move |c| PlannedChange {
                resource_id: s.resource_id.clone(),
                field: c.path.clone(),
                from: c.from.as_ref().map(compact),
                to: c.to.as_ref().map(compact),
                reason: s
                    .waiting_for
                    .as_ref()
                    .map(|w| format!("{} (after {w})", s.reason))
                    .unwrap_or_else(|| s.reason.clone()),
            })
        })
        .take(64)
        .collect()
}

/// `status.createdResources` after a pass: the list before, without what fhirlock created and
/// has since deleted (`gone`: no later look pays to read it, and a record of something that no
/// longer exists could only mislead teardown), with this pass's creations added.
pub fn created_resources(before: &[String], gone: &[String], created: Vec<String>) -> Vec<String> {
    let mut list: Vec<String> = before
        .iter()
        .filter(|c| !gone.iter().any(|g| id::same(g, c)))
        .cloned()
        .collect();
    add_ids(&mut list, created);
    list
}

/// Adds the resource IDs `list` does not already hold (ARM compares IDs case-insensitively).
pub fn add_ids(list: &mut Vec<String>, ids: impl IntoIterator<Item = String>) {
    for new in ids {
        if !list.iter().any(|x| id::same(x, &new)) {
            list.push(new);
        }
    }
}

fn finding_counts(o: &Assessment) -> Vec<(FindingCode, Severity, i64)> {
    let mut out: Vec<(FindingCode, Severity, i64)> = Vec::new();
    for f in &o.findings {
        match out
            .iter_mut()
            .find(|(c, s, _)| *c == f.code && *s == f.severity)
        {
            Some((_, _, n)) => *n += 1,
            None => out.push((f.code, f.severity, 1)),
        }
    }
    out
}

fn kind_name(kind: OperationKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{kind:?}"),
    }
}

fn short(resource_id: &str) -> String {
    id::ResourceId::parse(resource_id)
        .map(|r| r.name().to_owned())
        .unwrap_or_else(|| resource_id.to_owned())
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "decide_polls.rs"]
mod polls;

#[cfg(test)]
#[path = "decide_created_tests.rs"]
mod created_tests;
