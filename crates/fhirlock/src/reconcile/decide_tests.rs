//! Table tests of every branch of `decide`: no I/O, no clock.

use std::time::Duration;

use fhirlock_api::SecuredFhirEndpoint;
use fhirlock_api::v1alpha1::SecuredFhirEndpointStatus;
use fhirlock_arm::{ArmError, ErrorClass, Operation, OperationKind, OperationStatus};
use fhirlock_core::json::FieldChange;
use fhirlock_core::plan::{Method, Plan, Step, StepKind};
use fhirlock_core::posture::{Finding, FindingCode, Severity};
use fhirlock_core::preflight::PreflightFailure;
use fhirlock_core::status::Assessment;
use fhirlock_core::{Certificate, Desired};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

const SUB: &str = "/subscriptions/6f1c2a52-0000-4000-8000-000000000001";

fn desired() -> Desired {
    let sfe: SecuredFhirEndpoint =
        serde_yaml::from_str(include_str!("../../../../examples/fhir-endpoint.yaml")).unwrap();
    let cert = Certificate::Unresolved {
        reason: "test".into(),
    };
    Desired::from_spec("default", "patient-records", &sfe.spec, cert)
}

fn step(kind: StepKind, id: &str, ready: bool, creates: bool) -> Step {
    Step {
        kind,
        resource_id: format!("{SUB}/resourceGroups/fhir/providers/{id}"),
        method: Method::Put,
        api_version: "2024-05-01".into(),
        body: json!({}),
        changes: vec![FieldChange {
            path: "properties.x".into(),
            from: Some(json!(1)),
            to: Some(json!(2)),
        }],
        reason: "why".into(),
        waiting_for: (!ready).then(|| "something".into()),
        creates,
        precondition: None,
    }
}

fn subnet(ready: bool, creates: bool) -> Step {
    step(
        StepKind::GatewaySubnet,
        "Microsoft.Network/virtualNetworks/hscn-vnet/subnets/snet-fhir-agw",
        ready,
        creates,
    )
}

fn site(ready: bool) -> Step {
    step(
        StepKind::SiteAccessRestrictions,
        "Microsoft.Web/sites/fhir-server/config/web",
        ready,
        false,
    )
}

fn assessment(steps: Vec<Step>) -> Assessment {
    Assessment {
        plan: Plan { steps },
        ..Default::default()
    }
}

fn finding(code: FindingCode, severity: Severity) -> Finding {
    Finding {
        code,
        severity,
        resource_id: "r".into(),
        message: "m".into(),
    }
}

fn condition(type_: &str, status: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: "R".into(),
        message: "m".into(),
        observed_generation: None,
        last_transition_time: now(),
    }
}

fn with_conditions(conds: &[(&str, &str)]) -> SecuredFhirEndpointStatus {
    SecuredFhirEndpointStatus {
        conditions: conds.iter().map(|(t, s)| condition(t, s)).collect(),
        ..Default::default()
    }
}

fn pending(kind: &str) -> fhirlock_api::v1alpha1::PendingOperation {
    fhirlock_api::v1alpha1::PendingOperation {
        resource_id: "gw".into(),
        step: "Gateway".into(),
        method: "PUT".into(),
        api_version: "2024-05-01".into(),
        status_url: "https://management.azure.com/op".into(),
        kind: kind.into(),
        started: None,
    }
}

fn now() -> Time {
    Time(Timestamp::UNIX_EPOCH)
}

fn look<'a>(d: &'a Desired, o: Assessment, previous: &'a SecuredFhirEndpointStatus) -> Look<'a> {
    Look {
        desired: d,
        assessment: o,
        gateway: None,
        previous,
        generation: Some(3),
        created: Some(now()),
    }
}

fn cond<'a>(s: &'a SecuredFhirEndpointStatus, t: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

fn reasons(notes: &[Note]) -> Vec<&'static str> {
    notes.iter().map(|n| n.reason).collect()
}

const RESYNC: Duration = Duration::from_secs(300);

#[test]
fn gates_decide_whether_anything_is_written() {
    let d = desired();
    let none = SecuredFhirEndpointStatus::default();
    let preflight = Assessment {
        preflight: vec![PreflightFailure {
            code: "SiteNotFound",
            message: "no site".into(),
        }],
        ..Default::default()
    };
    let audit = Assessment {
        audit: true,
        ..assessment(vec![site(true)])
    };
    let audit_with_finding = Assessment {
        findings: vec![finding(FindingCode::SiteDefaultAllow, Severity::High)],
        ..audit.clone()
    };
    let wait = Some(Duration::from_secs(7));
    // (case, assessment, write wait) -> (writes?, deferred, notes, result, Ready reason, Reconciling reason)
    let table = [
        (
            "pre-flight",
            preflight,
            None,
            false,
            None,
            vec!["PreflightFailed"],
            Result::Stalled,
            "Stalled",
            "Stalled",
        ),
        (
            "audit, no finding",
            audit,
            None,
            false,
            None,
            vec![],
            Result::Ok,
            "ChangesPending",
            "AuditOnly",
        ),
        (
            "audit, a finding",
            audit_with_finding,
            None,
            false,
            None,
            vec![],
            Result::Ok,
            "FindingsPresent",
            "AuditOnly",
        ),
        (
            "nothing to do",
            assessment(vec![]),
            None,
            false,
            None,
            vec!["Secured"],
            Result::Ok,
            "Secured",
            "Converged",
        ),
        (
            "budget low",
            assessment(vec![site(true)]),
            wait,
            false,
            wait,
            vec![],
            Result::Ok,
            "Reconciling",
            "Throttled",
        ),
        (
            "enforce",
            assessment(vec![site(true)]),
            None,
            true,
            None,
            vec!["AzureWrite"],
            Result::Ok,
            "Reconciling",
            "Applying",
        ),
    ];
    for (case, o, write_wait, writes, deferred, notes, result, ready, reconciling) in table {
        let l = look(&d, o, &none);
        let decision = decide(&l, write_wait);
        assert_eq!(decision.writes.is_some(), writes, "{case}");
        assert_eq!(decision.deferred, deferred, "{case}");
        let written = Written {
            count: usize::from(writes),
            ..Default::default()
        };
        let c = conclude(&l, decision, &written, RESYNC, &now());
        assert_eq!(reasons(&c.notes), notes, "{case}");
        assert_eq!(c.result, result, "{case}");
        assert_eq!(cond(&c.status, "Ready").reason, ready, "{case}");
        assert_eq!(cond(&c.status, "Reconciling").reason, reconciling, "{case}");
        assert_eq!(c.status.observed_generation, Some(3), "{case}");
    }
}

#[test]
fn audit_mode_shows_the_plan_and_never_writes() {
    let d = desired();
    let none = SecuredFhirEndpointStatus::default();
    let o = Assessment {
        audit: true,
        ..assessment(vec![site(true), subnet(true, true)])
    };
    let l = look(&d, o, &none);
    let decision = decide(&l, None);
    assert!(decision.writes.is_none());
    let c = conclude(&l, decision, &Written::default(), RESYNC, &now());
    assert_eq!(c.status.plan.len(), 2, "Audit mode always shows the plan");
    let ready = cond(&c.status, "Ready");
    assert_eq!(ready.reason, "ChangesPending");
    assert!(
        ready.message.contains("AppServiceLocked, SubnetsReady"),
        "names the components that differ: {}",
        ready.message
    );
    assert!(!c.ready);
    assert_eq!(c.requeue, RESYNC);
}

#[test]
fn readiness_needs_enforce_an_empty_plan_and_only_advisory_findings() {
    let d = desired();
    let was_ready = with_conditions(&[("Ready", "True")]);
    let none = SecuredFhirEndpointStatus::default();
    let advisory = finding(FindingCode::CosmosKeyAuthEnabled, Severity::Advisory);
    let high = finding(FindingCode::SiteDefaultAllow, Severity::High);
    // (case, findings, previous) -> (ready, became ready)
    let table = [
        ("clean, new", vec![], &none, true, true),
        ("clean, already ready", vec![], &was_ready, true, false),
        ("advisory only", vec![advisory.clone()], &none, true, true),
        (
            "blocking finding",
            vec![high, advisory],
            &none,
            false,
            false,
        ),
    ];
    for (case, findings, previous, ready, became) in table {
        let o = Assessment {
            findings,
            ..Default::default()
        };
        let l = look(&d, o, previous);
        let c = conclude(&l, decide(&l, None), &Written::default(), RESYNC, &now());
        assert_eq!((c.ready, c.became_ready), (ready, became), "{case}");
        assert_eq!(reasons(&c.notes).contains(&"Secured"), became, "{case}");
    }
}

#[test]
fn creations_are_recorded_before_the_put_once() {
    let d = desired();
    let s = subnet(true, true);
    let recorded_upper = SecuredFhirEndpointStatus {
        created_resources: vec![s.resource_id.to_uppercase()],
        ..Default::default()
    };
    let none = SecuredFhirEndpointStatus::default();
    // (case, steps, previous) -> record first
    let table = [
        (
            "new subnet",
            vec![s.clone()],
            &none,
            vec![s.resource_id.clone()],
        ),
        (
            "already recorded (IDs compare case-insensitively)",
            vec![s.clone()],
            &recorded_upper,
            vec![],
        ),
        (
            "a step that does not create",
            vec![site(true)],
            &none,
            vec![],
        ),
        (
            "a creation still waiting",
            vec![subnet(false, true), site(true)],
            &none,
            vec![],
        ),
    ];
    for (case, steps, previous, want) in table {
        let l = look(&d, assessment(steps), previous);
        let writes = decide(&l, None).writes.unwrap();
        assert_eq!(writes.record_first, want, "{case}");
        assert!(
            writes.steps.iter().all(Step::ready),
            "{case}: only ready steps run"
        );
    }
}

#[test]
fn drift_is_a_change_to_a_component_that_had_converged() {
    let d = desired();
    let converged = with_conditions(&[("AppServiceLocked", "True"), ("SubnetsReady", "True")]);
    let first_time = with_conditions(&[("AppServiceLocked", "False")]);
    // (case, steps, previous) -> drifted resources
    let table = [
        ("converged site changed", vec![site(true)], &converged, 1),
        ("first convergence", vec![site(true)], &first_time, 0),
        (
            "a creation is never drift",
            vec![subnet(true, true)],
            &converged,
            0,
        ),
        (
            "converged subnet changed",
            vec![subnet(true, false)],
            &converged,
            1,
        ),
    ];
    for (case, steps, previous, want) in table {
        let l = look(&d, assessment(steps), previous);
        let decision = decide(&l, None);
        assert_eq!(
            decision.writes.as_ref().unwrap().drift.len(),
            want,
            "{case}"
        );
        let written = Written {
            count: 1,
            ..Default::default()
        };
        let c = conclude(&l, decision, &written, RESYNC, &now());
        assert_eq!(c.drift_corrected.len(), want, "{case}");
        assert_eq!(c.status.last_drift.is_some(), want > 0, "{case}");
        assert_eq!(
            reasons(&c.notes)
                .iter()
                .filter(|r| **r == "DriftCorrected")
                .count(),
            want,
            "{case}"
        );
    }
}

#[test]
fn drift_is_corrected_only_where_a_write_went_through() {
    let d = desired();
    let converged = with_conditions(&[("AppServiceLocked", "True"), ("SubnetsReady", "True")]);
    let l = look(
        &d,
        assessment(vec![subnet(true, false), site(true)]),
        &converged,
    );
    let written = Written {
        count: 1,
        failed: Some(ArmError::new(
            ErrorClass::Transient,
            "InternalServerError",
            "boom",
        )),
        ..Default::default()
    };
    let c = conclude(&l, decide(&l, None), &written, RESYNC, &now());
    assert_eq!(reasons(&c.notes), vec!["AzureWrite", "DriftCorrected"]);
    assert_eq!(c.drift_corrected.len(), 1);
    assert!(!c.became_ready);
}

#[test]
fn a_wait_for_the_cosmos_firewall_looks_again_when_it_ends_and_keeps_its_start_in_status() {
    let d = desired();
    let none = SecuredFhirEndpointStatus::default();
    let at = |s: i64| Timestamp::from_second(s).unwrap();
    // (case, the wait ends at, requeue)
    let table = [
        ("ends in 2 minutes", Some(at(120)), Duration::from_secs(120)),
        ("ends after the resync", Some(at(900)), RESYNC),
        ("has just ended", Some(at(0)), Duration::from_secs(1)),
        ("no timed wait", None, Duration::from_secs(5)),
    ];
    for (case, ends, want) in table {
        let mut a = assessment(vec![site(false)]);
        a.wait_ends = ends;
        a.cosmos_rule_since = Some(at(-780));
        let l = look(&d, a, &none);
        let c = conclude(&l, decide(&l, None), &Written::default(), RESYNC, &now());
        assert_eq!(c.requeue, want, "{case}");
        assert_eq!(c.status.cosmos_rule_since, Some(Time(at(-780))), "{case}");
    }
}

#[test]
fn the_next_look_follows_what_the_writes_did() {
    let d = desired();
    let none = SecuredFhirEndpointStatus::default();
    let op = Operation {
        resource_id: "gw".into(),
        method: "PUT".into(),
        api_version: "2024-05-01".into(),
        status_url: "https://management.azure.com/op".into(),
        kind: OperationKind::Location,
        retry_after_secs: Some(17),
    };
    // (case, written, pending) -> requeue
    let table = [
        ("writes finished", 2, None, Duration::from_millis(500)),
        ("only waiting steps", 0, None, Duration::from_secs(5)),
        (
            "an operation started",
            1,
            Some((op.clone(), StepKind::Gateway)),
            Duration::from_secs(17),
        ),
    ];
    for (case, count, pending, want) in table {
        let l = look(&d, assessment(vec![site(true)]), &none);
        let has_op = pending.is_some();
        let written = Written {
            count,
            pending,
            ..Default::default()
        };
        let c = conclude(&l, decide(&l, None), &written, RESYNC, &now());
        assert_eq!(c.requeue, want, "{case}");
        assert_eq!(
            c.status.pending_operations.len(),
            usize::from(has_op),
            "{case}"
        );
        if has_op {
            let p = &c.status.pending_operations[0];
            assert_eq!((p.step.as_str(), p.kind.as_str()), ("Gateway", "Location"));
            assert_eq!(operation_of(p).kind, OperationKind::Location, "round trip");
            assert_eq!(cond(&c.status, "Reconciling").reason, "WaitingForOperation");
        }
    }
}

#[test]
fn an_operation_handle_is_read_back_by_its_kind_name() {
    for (name, kind) in [
        ("AsyncOperation", OperationKind::AsyncOperation),
        ("Location", OperationKind::Location),
        ("ProvisioningState", OperationKind::ProvisioningState),
        ("garbage", OperationKind::AsyncOperation),
    ] {
        assert_eq!(operation_of(&pending(name)).kind, kind, "{name}");
    }
}

#[test]
fn a_poll_says_wait_retry_proceed_or_start_afresh() {
    let p = pending("AsyncOperation");
    let s = Duration::from_secs;
    let throttled = ArmError {
        retry_after: Some(s(3)),
        ..ArmError::new(ErrorClass::Throttled, "TooManyRequests", "slow down")
    };
    let failed = ArmError::new(ErrorClass::Terminal, "Bad", "no");
    let gone = ArmError::new(ErrorClass::Terminal, "InvalidOperationUrl", "not one");
    let not_found = |code: &str| ArmError {
        status: Some(404),
        ..ArmError::new(ErrorClass::Terminal, code, "gone")
    };
    let dropped = |code: &str| {
        AfterPoll::Dropped(Note::warning(
            "OperationDropped",
            "OperationDropped",
            format!(
                "the operation recorded in status (Gateway on gw) is not found in Azure ({code}): looking at Azure afresh"
            ),
        ))
    };
    let table = [
        (
            "running, Retry-After",
            Ok(OperationStatus::InProgress {
                retry_after: Some(s(4)),
            }),
            AfterPoll::Running(s(4)),
        ),
        (
            "running, no Retry-After",
            Ok(OperationStatus::InProgress { retry_after: None }),
            AfterPoll::Running(s(10)),
        ),
        (
            "succeeded",
            Ok(OperationStatus::Succeeded),
            AfterPoll::Ended(Note::normal(
                "OperationSucceeded",
                "Gateway",
                "Gateway on gw finished",
            )),
        ),
        (
            "failed",
            Ok(OperationStatus::Failed(failed.clone())),
            AfterPoll::Ended(Note::warning(
                "OperationFailed",
                "Gateway",
                format!("Gateway on gw failed: {failed}"),
            )),
        ),
        ("poll throttled", Err(throttled), AfterPoll::Retry(s(3))),
        (
            "poll transient",
            Err(ArmError::new(ErrorClass::Transient, "x", "y")),
            AfterPoll::Retry(s(10)),
        ),
        ("handle gone", Err(gone), AfterPoll::Lost),
        // Polled for ever before: a 404 read as "still running", and nothing else was observed.
        (
            "404 OperationNotFound",
            Err(not_found("OperationNotFound")),
            dropped("OperationNotFound"),
        ),
        ("any 404", Err(not_found("NotFound")), dropped("NotFound")),
    ];
    for (case, polled, want) in table {
        assert_eq!(after_poll(&p, polled), want, "{case}");
    }
}

#[test]
fn a_failed_call_retries_when_retryable_and_stalls_with_a_reason_when_not() {
    let d = desired();
    let none = SecuredFhirEndpointStatus::default();
    let table = [
        (ErrorClass::Throttled, None),
        (ErrorClass::Transient, None),
        (ErrorClass::Conflict, None),
        (ErrorClass::Auth, Some("AuthorizationFailed")),
        (ErrorClass::Terminal, Some("AzureRejected")),
    ];
    for (class, want) in table {
        let e = ArmError::new(class, "Code", "message");
        match (on_failure(&e, Some(&d), &none, Some(3), &now()), want) {
            (OnFailure::Retry, None) => {}
            (OnFailure::Stall { status, note }, Some(reason)) => {
                assert_eq!(note.reason, reason);
                assert!(note.warning);
                assert_eq!(cond(&status, "Stalled").reason, reason);
                assert_eq!(cond(&status, "Stalled").status, "True");
                assert!(
                    !status.next_steps.is_empty(),
                    "next steps need the desired state"
                );
            }
            (got, want) => panic!("{class:?}: {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn a_stall_keeps_what_status_recorded() {
    let d = desired();
    let open = Assessment {
        findings: vec![finding(FindingCode::SiteDefaultAllow, Severity::High)],
        ..assessment(vec![site(true)])
    };
    let none = SecuredFhirEndpointStatus::default();
    let l = look(&d, open, &none);
    let seen = conclude(&l, decide(&l, None), &Written::default(), RESYNC, &now()).status;
    let previous = SecuredFhirEndpointStatus {
        created_resources: vec!["subnet".into()],
        ..seen
    };
    let (status, note) = stalled(
        "IdentityNotFound",
        "Secret x missing",
        None,
        &previous,
        Some(2),
        &now(),
    );
    assert_eq!(status.created_resources, vec!["subnet".to_owned()]);
    assert_eq!(cond(&status, "Ready").status, "False");
    assert_eq!(note.reason, "IdentityNotFound");
    assert!(status.next_steps.is_empty());
    // Azure was not looked at: nothing may claim the estate is locked down.
    assert_eq!(
        status.findings, previous.findings,
        "findings as last observed"
    );
    assert_eq!(status.finding_count, Some(1));
    for c in [
        "SubnetsReady",
        "GatewayReady",
        "AppServiceLocked",
        "CosmosLocked",
        "PostureCompliant",
    ] {
        assert_eq!(cond(&status, c).status, "Unknown", "{c}");
    }
}

#[test]
fn findings_keep_their_since_across_resyncs() {
    let d = desired();
    let first = Assessment {
        findings: vec![finding(FindingCode::SiteDefaultAllow, Severity::High)],
        ..Default::default()
    };
    let none = SecuredFhirEndpointStatus::default();
    let l = look(&d, first.clone(), &none);
    let earlier = conclude(&l, decide(&l, None), &Written::default(), RESYNC, &now()).status;
    let later = Time(Timestamp::UNIX_EPOCH + Duration::from_secs(600));
    let l = look(&d, first, &earlier);
    let c = conclude(&l, decide(&l, None), &Written::default(), RESYNC, &later);
    assert_eq!(c.status.findings[0].since, Some(now()));
    assert_eq!(c.status.last_sync_time, Some(later));
    assert_eq!(
        c.findings_by_code,
        vec![(FindingCode::SiteDefaultAllow, Severity::High, 1)]
    );
}

#[test]
fn only_this_endpoints_own_recent_operations_are_polled() {
    let d = desired();
    let at = |secs: i64| Some(Time(Timestamp::from_second(1_800_000_000 + secs).unwrap()));
    let now = Timestamp::from_second(1_800_000_000 + 600).unwrap();
    let ours = |resource_id: String, url: &str| fhirlock_api::v1alpha1::PendingOperation {
        resource_id,
        status_url: url.into(),
        started: at(0),
        ..pending("AsyncOperation")
    };
    let own_url = format!(
        "https://management.azure.com{SUB}/providers/Microsoft.Network/locations/uksouth/operations/1?api-version=2024-05-01"
    );
    let gateway = d.gateway.id.clone();
    let other_sub = "https://management.azure.com/subscriptions/00000000-0000-4000-8000-000000000099/providers/Microsoft.Network/locations/uksouth/operations/1";
    let other_rg =
        format!("{SUB}/resourceGroups/someone-else/providers/Microsoft.Web/sites/their-app");
    // (case, handle) -> polled?
    let table = [
        (
            "the gateway's own operation",
            ours(gateway.clone(), &own_url),
            true,
        ),
        (
            "the ID in other letter case",
            ours(gateway.to_uppercase(), &own_url),
            true,
        ),
        (
            "the site's config",
            ours(d.site_config_id(), &own_url),
            true,
        ),
        ("another team's site", ours(other_rg, &own_url), false),
        (
            "a status URL in another subscription",
            ours(gateway.clone(), other_sub),
            false,
        ),
        (
            "not an https URL",
            ours(gateway.clone(), "file:///etc/passwd"),
            false,
        ),
        (
            "a GET dressed as an operation",
            fhirlock_api::v1alpha1::PendingOperation {
                method: "GET".into(),
                ..ours(gateway.clone(), &own_url)
            },
            false,
        ),
        (
            "older than fhirlock waits",
            fhirlock_api::v1alpha1::PendingOperation {
                started: at(-3601 + 600),
                ..ours(gateway.clone(), &own_url)
            },
            false,
        ),
        (
            "no start time",
            fhirlock_api::v1alpha1::PendingOperation {
                started: None,
                ..ours(gateway.clone(), &own_url)
            },
            false,
        ),
    ];
    for (case, p, polled) in table {
        let note = reject_pending(&p, &d, now);
        assert_eq!(note.is_none(), polled, "{case}: {note:?}");
        if let Some(n) = note {
            assert!(n.warning && n.reason == "OperationDropped", "{case}");
        }
    }
}

#[test]
fn time_to_ready_runs_from_when_ready_went_false_or_from_creation() {
    let d = desired();
    let at = |secs: i64| Time(Timestamp::from_second(secs).unwrap());
    let went_false = SecuredFhirEndpointStatus {
        conditions: vec![Condition {
            last_transition_time: at(1_000),
            ..condition("Ready", "False")
        }],
        ..Default::default()
    };
    let new = SecuredFhirEndpointStatus::default();
    let was_ready = with_conditions(&[("Ready", "True")]);
    // (case, previous, created) -> time to Ready at t = 1,300
    let table = [
        (
            "drift or a spec change",
            &went_false,
            Some(at(0)),
            Some(300),
        ),
        ("a new endpoint", &new, Some(at(100)), Some(1_200)),
        ("already Ready", &was_ready, Some(at(0)), None),
    ];
    for (case, previous, created, want) in table {
        let l = Look {
            created,
            ..look(&d, Assessment::default(), previous)
        };
        let c = conclude(
            &l,
            decide(&l, None),
            &Written::default(),
            RESYNC,
            &at(1_300),
        );
        assert_eq!(c.time_to_ready, want.map(Duration::from_secs), "{case}");
    }
}
