//! `after_poll` and `on_failure` driven by generated ARM answers (seeded; `FHIRLOCK_SOAK=1` runs
//! 20 times as many): each answer, however odd (a 404 `OperationNotFound`, a `Retry-After` of
//! 1e19 or an HTTP date, a truncated body), ends in a classified outcome with a bounded wait, the
//! same the shell carries out.

use std::time::Duration;

use fhirlock_api::SecuredFhirEndpointStatus;
use fhirlock_api::v1alpha1::PendingOperation;
use fhirlock_arm::{Headers, Operation, OperationKind, classify, poll_outcome};
use fhirlock_testkit::Rng;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;

/// The longest wait a header may impose (the ARM client's clamp).
const CLAMP: Duration = Duration::from_secs(3600);

fn cases() -> usize {
    if std::env::var("FHIRLOCK_SOAK").is_ok_and(|v| v == "1") {
        40_000
    } else {
        2_000
    }
}

fn handle(kind: OperationKind) -> PendingOperation {
    let p = Operation {
        resource_id: "/subscriptions/s/resourceGroups/fhir/providers/Microsoft.Network/applicationGateways/agw".into(),
        method: "PUT".into(),
        api_version: "2025-01-01".into(),
        status_url: "https://management.azure.com/subscriptions/s/providers/Microsoft.Network/locations/uksouth/operations/1".into(),
        kind,
        retry_after_secs: None,
    };
    PendingOperation {
        resource_id: p.resource_id,
        step: "Gateway".into(),
        method: p.method,
        api_version: p.api_version,
        status_url: p.status_url,
        kind: serde_json::to_value(kind)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned(),
        started: None,
    }
}

fn desired() -> Desired {
    let sfe: fhirlock_api::SecuredFhirEndpoint =
        serde_yaml::from_str(include_str!("../../../../examples/fhir-endpoint.yaml")).unwrap();
    let cert = fhirlock_core::Certificate::Unresolved {
        reason: "test".into(),
    };
    Desired::from_spec("default", "patient-records", &sfe.spec, cert)
}

fn answer(rng: &mut Rng) -> (u16, Headers, Vec<u8>) {
    let status = *rng.pick(&[200, 202, 204, 400, 401, 403, 404, 409, 412, 429, 500, 503]);
    let wait = *rng.pick(&[
        "10",
        "0",
        "10000000000000000000",
        "1e19",
        "-1",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "99999999999999999999999999999999999999999",
    ]);
    let name = *rng.pick(&["Retry-After", "x-ms-retry-after-ms"]);
    let headers = if rng.below(4) == 0 {
        Vec::new()
    } else {
        vec![(name.to_owned(), wait.to_owned())]
    };
    let body = rng
        .pick(&[
            r#"{"status":"InProgress"}"#,
            r#"{"status":"Succeeded"}"#,
            r#"{"status":"Failed","error":{"code":"InternalServerError","message":"m"}}"#,
            r#"{"error":{"code":"OperationNotFound","message":"The operation '1' could not be found."}}"#,
            r#"{"error":{"code":"AuthorizationFailed","message":"no"}}"#,
            r#"{"properties":{"provisioningState":"Updating"}}"#,
            r#"{"status":"#,
            "",
        ])
        .as_bytes()
        .to_vec();
    (status, headers, body)
}

#[test]
fn every_generated_poll_answer_ends_classified_with_a_bounded_wait() {
    let mut rng = Rng::seeded("after_poll");
    for _ in 0..cases() {
        let kind = *rng.pick(&[
            OperationKind::AsyncOperation,
            OperationKind::Location,
            OperationKind::ProvisioningState,
        ]);
        let p = handle(kind);
        let (status, headers, body) = answer(&mut rng);
        let polled = poll_outcome(&operation_of(&p), status, &headers, &body);
        let case = format!(
            "{kind:?} {status} {headers:?} {}",
            String::from_utf8_lossy(&body)
        );
        match after_poll(&p, polled) {
            AfterPoll::Running(d) | AfterPoll::Retry(d) => {
                assert!(d <= CLAMP, "{case}: waits {d:?}");
                assert!(
                    !(status == 404 && kind != OperationKind::ProvisioningState),
                    "{case}: a 404 is polled again"
                );
            }
            AfterPoll::Dropped(note) => {
                assert_eq!(status, 404, "{case}");
                assert_eq!((note.reason, note.warning), ("OperationDropped", true));
            }
            AfterPoll::Ended(note) => {
                assert!(["OperationSucceeded", "OperationFailed"].contains(&note.reason));
            }
            AfterPoll::Lost => assert!(
                matches!(status, 400 | 401 | 403 | 409 | 412),
                "{case}: only a refused poll loses the handle (the look that follows says why)"
            ),
        }
    }
}

#[test]
fn every_generated_failed_call_retries_or_stalls_with_a_reason() {
    let mut rng = Rng::seeded("on_failure");
    let d = desired();
    let none = SecuredFhirEndpointStatus::default();
    let now = Time(Timestamp::UNIX_EPOCH);
    for _ in 0..cases() {
        let (status, headers, body) = answer(&mut rng);
        let e = classify(status, &headers, &body);
        assert!(e.retry_after.is_none_or(|w| w <= CLAMP), "{e:?}");
        match on_failure(&e, Some(&d), &none, Some(1), &now) {
            OnFailure::Retry => assert!(e.class.is_retryable(), "{e:?}"),
            OnFailure::Stall { status, note } => {
                assert!(!e.class.is_retryable(), "{e:?}");
                let stalled = status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Stalled")
                    .expect("a Stalled condition");
                assert_eq!(stalled.status, "True");
                assert_eq!(stalled.reason, note.reason);
                assert!(
                    [
                        "AuthorizationFailed",
                        "AzureRejected",
                        "HostNameNotVerified"
                    ]
                    .contains(&note.reason),
                    "{e:?}: {}",
                    note.reason
                );
            }
        }
    }
}
