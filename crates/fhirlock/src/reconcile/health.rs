//! **health**: whether the gateway really reaches the FHIR server, from Application Gateway's
//! backend health (`POST …/applicationGateways/{name}/backendhealth`, SPEC-NET 2025-01-01
//! `ApplicationGateways_BackendHealth`: no body, a long-running operation with
//! `final-state-via: location`, the health in the last poll's body).
//!
//! It runs between decide and apply, so it judges Azure as this pass found it. At most one check
//! is in flight per endpoint; it is started on a pass that may check
//! ([`fhirlock_core::reachable::may_check`]) when the last one is `--backend-health-seconds` old,
//! and read on the next pass (requeued for its `Retry-After`). The POST spends the subscription's
//! write bucket [U: ARM's documentation lists reads, writes and deletes, not which a POST action
//! is; the emulator counts it as a write], so it waits for fhirlock's share like any write. A
//! failing check makes Reachable Unknown; it never stops or fails the pass.

use std::time::{Duration, Instant};

use fhirlock_api::SecuredFhirEndpoint;
use fhirlock_arm::{OperationStatus, WriteOutcome};
use fhirlock_core::observed::api_version;
use fhirlock_core::reachable::{self, REACHABLE, Reachability};

use super::decide::{Decision, Note};
use super::observe::Seen;
use super::resolve::Resolved;
use super::{Context, apply, key};

/// What the stage found: Reachable for this pass, and when to look again for a check in flight.
#[derive(Debug, Default)]
pub struct Checked {
    pub reachability: Reachability,
    pub requeue: Option<Duration>,
}

pub async fn stage(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    r: &Resolved,
    seen: &Seen,
    decision: &Decision,
) -> Checked {
    let key = key(sfe);
    let previous = sfe
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let status_of = |t: &str| {
        previous
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.as_str())
    };
    let a = &decision.assessment;
    let converged = a.plan.is_empty() || status_of(fhirlock_core::status::READY) == Some("True");
    if let Err(not_now) = reachable::may_check(&seen.observed, &a.plan, a.audit, converged) {
        if not_now != Reachability::Kept {
            // An answer about a gateway that is changing says nothing about the next one.
            ctx.memory.endpoint(&key, |m| m.health.in_flight = None);
        }
        return Checked {
            reachability: not_now,
            requeue: None,
        };
    }
    let judged = matches!(status_of(REACHABLE), Some("True" | "False"));
    let min = ctx.settings.backend_health;
    let (in_flight, due) = ctx.memory.endpoint(&key, |m| {
        (
            m.health.in_flight.clone(),
            m.health.due(judged, Instant::now(), min),
        )
    });
    let checked = if let Some(op) = in_flight {
        read(ctx, &key, r, &op).await
    } else if due && apply::write_wait(ctx, r).is_none() && ctx.leader.may_act() {
        start(ctx, &key, r).await
    } else {
        Checked::default()
    };
    if let Some(note) = transition(&checked.reachability, status_of(REACHABLE)) {
        super::report::publish(ctx, sfe, &note).await;
    }
    checked
}

/// Reads the check in flight (one GET).
async fn read(ctx: &Context, key: &str, r: &Resolved, op: &fhirlock_arm::Operation) -> Checked {
    let polled = r.arm.poll_with_result(op).await;
    if let Ok((OperationStatus::InProgress { retry_after }, _)) = &polled {
        return Checked {
            reachability: Reachability::Kept,
            requeue: Some(op.next_poll_in(*retry_after)),
        };
    }
    ctx.memory.endpoint(key, |m| m.health.in_flight = None);
    let reachability = match polled {
        Ok((OperationStatus::Succeeded, Some(health))) => reachable::judge(&health),
        Ok((OperationStatus::Succeeded, None)) => {
            failed("the backend-health operation ended without an answer")
        }
        Ok((OperationStatus::Failed(e), _)) => failed(&e.to_string()),
        Ok((OperationStatus::InProgress { .. }, _)) => unreachable!("returned above"),
        Err(e) => failed(&e.to_string()),
    };
    Checked {
        reachability,
        requeue: None,
    }
}

/// Starts a check (one POST, no body).
async fn start(ctx: &Context, key: &str, r: &Resolved) -> Checked {
    ctx.memory
        .endpoint(key, |m| m.health.last_started = Some(Instant::now()));
    let path = format!("{}/backendhealth", r.desired.gateway.id);
    match r.arm.post(&path, api_version::NETWORK, None).await {
        Ok(WriteOutcome::Accepted(op)) => {
            let requeue = op.next_poll_in(None);
            ctx.memory.endpoint(key, |m| m.health.in_flight = Some(op));
            Checked {
                reachability: Reachability::Kept,
                requeue: Some(requeue),
            }
        }
        Ok(WriteOutcome::Done {
            body: Some(health), ..
        }) => Checked {
            reachability: reachable::judge(&health),
            requeue: None,
        },
        Ok(WriteOutcome::Done { body: None, .. }) => Checked {
            reachability: failed("backend health answered without a body"),
            requeue: None,
        },
        Err(e) => Checked {
            reachability: failed(&e.to_string()),
            requeue: None,
        },
    }
}

fn failed(why: &str) -> Reachability {
    Reachability::Indeterminate {
        reason: "CheckFailed",
        message: format!("reading the gateway's backend health failed: {why}"),
    }
}

/// The Event when Reachable changes between True and False.
pub fn transition(now: &Reachability, before: Option<&str>) -> Option<Note> {
    match (now, before) {
        (Reachability::Unhealthy(m), b) if b != Some("False") => Some(Note::warning(
            "Unreachable",
            "BackendHealth",
            format!("the gateway does not reach the FHIR server: {m}"),
        )),
        (Reachability::Healthy(m), Some("False")) => {
            Some(Note::normal("Reachable", "BackendHealth", m.clone()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_only_when_reachable_turns() {
        let down = Reachability::Unhealthy("fhir: 403".into());
        let up = Reachability::Healthy("fine".into());
        let table = [
            (&down, None, Some("Unreachable")),
            (&down, Some("True"), Some("Unreachable")),
            (&down, Some("Unknown"), Some("Unreachable")),
            (&down, Some("False"), None),
            (&up, Some("False"), Some("Reachable")),
            (&up, Some("True"), None),
            (&up, None, None),
            (&Reachability::Kept, Some("False"), None),
        ];
        for (now, before, want) in table {
            assert_eq!(
                transition(now, before).map(|n| n.reason),
                want,
                "{now:?} {before:?}"
            );
        }
    }
}
