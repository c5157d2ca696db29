//! Long-running operations as data. A write that ARM accepts asynchronously becomes an
//! [`Operation`] handle (serialisable, so it can live in a custom resource's status and survive a
//! restart); [`crate::ArmClient::poll`] sends exactly one request for it and interprets the answer
//! with [`poll_outcome`]. Both interpretations here are pure.

use azure_core::http::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

use crate::error::{ArmError, ErrorClass, class_of_code, classify};
use crate::headers::{Headers, header, retry_after};

/// How the status of an operation is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationKind {
    /// `Azure-AsyncOperation`: 200 with `{"status":"InProgress|Succeeded|Failed|Canceled","error":…}`.
    AsyncOperation,
    /// `Location`: 202 while running, then the final response (200/201/204, or an error).
    Location,
    /// No status URL, but the resource came back with a non-terminal `provisioningState`: GET the
    /// resource itself and read `properties.provisioningState` (for DELETE: until it is 404).
    ProvisioningState,
}

/// A submitted long-running operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// The resource (or action path) the operation acts on.
    pub resource_id: String,
    /// The HTTP method that started it (`PUT`, `PATCH`, `DELETE`, `POST`).
    pub method: String,
    pub api_version: String,
    /// Absolute URL to poll: `Azure-AsyncOperation` preferred, else `Location`, else the resource.
    pub status_url: String,
    pub kind: OperationKind,
    /// The server's suggested wait before the first poll (`Retry-After`, seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// The wait before polling when the server names none. The ARM RPC suggests clients wait 60 s
/// then; the Azure SDKs for Go (and go-azure-sdk) wait 10 s, which fhirlock follows: Network, Web
/// and Cosmos DB send `Retry-After` on their operations, so this applies only when one does not,
/// and one poll is a single read.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

impl Operation {
    /// When to poll next: the last poll's `Retry-After`, else the one that came with the write,
    /// else [`DEFAULT_POLL_INTERVAL`]; never less than a second nor more than ten minutes.
    pub fn next_poll_in(&self, last_retry_after: Option<Duration>) -> Duration {
        last_retry_after
            .or(self.retry_after_secs.map(Duration::from_secs))
            .unwrap_or(DEFAULT_POLL_INTERVAL)
            .clamp(Duration::from_secs(1), Duration::from_secs(600))
    }
}

/// The result of a write.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome {
    /// Finished synchronously (200/201/204, or 202 without anything to poll).
    Done { status: u16, body: Option<Value> },
    /// Accepted; poll the operation, one request per reconcile.
    Accepted(Operation),
}

/// What one poll found.
#[derive(Clone, Debug, PartialEq)]
pub enum OperationStatus {
    InProgress {
        retry_after: Option<Duration>,
    },
    Succeeded,
    /// The operation ended in `Failed` or `Canceled` (or its final response was an error). For an
    /// operation-status body the error has no HTTP status (`status: None`) and is classified by
    /// its code.
    Failed(ArmError),
}

const TERMINAL_SUCCESS: &str = "Succeeded";

fn is_terminal_failure(s: &str) -> bool {
    s.eq_ignore_ascii_case("Failed")
        || s.eq_ignore_ascii_case("Canceled")
        || s.eq_ignore_ascii_case("Cancelled")
}

fn provisioning_state(body: &Value) -> Option<&str> {
    body.get("properties")
        .and_then(|p| p.get("provisioningState"))
        .and_then(Value::as_str)
}

fn parse_json(body: &[u8]) -> Option<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// Same URL ignoring the query string and the case of the path (ARM ids are case-insensitive).
fn same_resource(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
        && a.path()
            .trim_end_matches('/')
            .eq_ignore_ascii_case(b.path().trim_end_matches('/'))
}

/// Interprets a successful (2xx) answer to a write. `request_url` is the URL the write was sent
/// to (with `api-version`); relative status URLs (not allowed by the RPC, but tolerated) are
/// resolved against it.
pub fn write_outcome(
    resource_id: &str,
    method: &str,
    api_version: &str,
    request_url: &Url,
    status: u16,
    headers: &Headers,
    body: &[u8],
) -> WriteOutcome {
    let json = parse_json(body);
    let retry_after_secs = retry_after(headers).map(|d| d.as_secs());
    let candidates = [
        ("azure-asyncoperation", OperationKind::AsyncOperation),
        ("location", OperationKind::Location),
    ];
    for (name, kind) in candidates {
        let Some(raw) = header(headers, name).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let Ok(url) = request_url.join(raw.trim()) else {
            continue;
        };
        if same_resource(&url, request_url) {
            continue;
        }
        return WriteOutcome::Accepted(Operation {
            resource_id: resource_id.to_string(),
            method: method.to_ascii_uppercase(),
            api_version: api_version.to_string(),
            status_url: url.to_string(),
            kind,
            retry_after_secs,
        });
    }
    let pending = json
        .as_ref()
        .and_then(provisioning_state)
        .is_some_and(|s| !s.eq_ignore_ascii_case(TERMINAL_SUCCESS) && !is_terminal_failure(s));
    if pending && status != 204 {
        return WriteOutcome::Accepted(Operation {
            resource_id: resource_id.to_string(),
            method: method.to_ascii_uppercase(),
            api_version: api_version.to_string(),
            status_url: request_url.to_string(),
            kind: OperationKind::ProvisioningState,
            retry_after_secs,
        });
    }
    WriteOutcome::Done { status, body: json }
}

fn failed_from_body(body: &Value, state: &str) -> ArmError {
    let err = body.get("error").cloned().unwrap_or(Value::Null);
    let mut code = err
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if code.is_empty() {
        code = if state.eq_ignore_ascii_case("Failed") {
            "OperationFailed".into()
        } else {
            "Canceled".into()
        };
    }
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("the operation ended {state} without an error message"));
    ArmError {
        class: class_of_code(&code),
        status: None,
        code,
        message,
        retry_after: None,
        request_id: None,
    }
}

/// Interprets the answer to one poll of `op` (pure). `Err` means the poll itself failed
/// (throttled, 5xx, auth…) and says nothing about the operation; `Ok(Failed)` means the operation
/// ended badly.
pub fn poll_outcome(
    op: &Operation,
    status: u16,
    headers: &Headers,
    body: &[u8],
) -> Result<OperationStatus, ArmError> {
    let in_progress = || OperationStatus::InProgress {
        retry_after: retry_after(headers),
    };
    if status == 429 || status == 408 || status >= 500 || status == 401 || status == 403 {
        return Err(classify(status, headers, body));
    }
    let json = parse_json(body);
    match op.kind {
        // A 404 on a status URL: the operation is unknown (expired, forgotten, or never ARM's).
        // Polling it again would answer the same for ever, while nothing else is observed, so
        // it is a failed poll (`Err`, Terminal, `is_not_found`) and the caller drops the handle
        // and reads the resource itself. The RPC: a 4xx on the status URL means reading the
        // status failed, not the operation; the Azure SDK for Go's pollers take only 200, 201,
        // 202 and 204 as answers (azcore `internal/pollers/util.go` `StatusCodeValid`).
        _ if status == 404 && op.kind != OperationKind::ProvisioningState => {
            Err(classify(status, headers, body))
        }
        OperationKind::AsyncOperation => match status {
            202 => Ok(in_progress()),
            200..=299 => {
                let Some(v) = json else {
                    return Ok(OperationStatus::Succeeded);
                };
                let state = v
                    .get("status")
                    .and_then(Value::as_str)
                    .or_else(|| provisioning_state(&v))
                    .unwrap_or("");
                if state.eq_ignore_ascii_case(TERMINAL_SUCCESS) {
                    Ok(OperationStatus::Succeeded)
                } else if is_terminal_failure(state) {
                    Ok(OperationStatus::Failed(failed_from_body(&v, state)))
                } else {
                    Ok(in_progress())
                }
            }
            _ => Err(classify(status, headers, body)),
        },
        OperationKind::Location => match status {
            202 => Ok(in_progress()),
            200..=299 => match json.as_ref().and_then(provisioning_state) {
                Some(s) if is_terminal_failure(s) => Ok(OperationStatus::Failed(failed_from_body(
                    json.as_ref().unwrap_or(&Value::Null),
                    s,
                ))),
                _ => Ok(OperationStatus::Succeeded),
            },
            _ => Ok(OperationStatus::Failed(classify(status, headers, body))),
        },
        OperationKind::ProvisioningState => match status {
            404 if op.method == "DELETE" => Ok(OperationStatus::Succeeded),
            404 => Ok(OperationStatus::Failed(ArmError {
                class: ErrorClass::Transient,
                ..classify(status, headers, body)
            })),
            200..=299 => match json.as_ref().and_then(provisioning_state) {
                None => Ok(OperationStatus::Succeeded),
                Some(s) if s.eq_ignore_ascii_case(TERMINAL_SUCCESS) && op.method != "DELETE" => {
                    Ok(OperationStatus::Succeeded)
                }
                Some(s) if is_terminal_failure(s) => Ok(OperationStatus::Failed(failed_from_body(
                    json.as_ref().unwrap_or(&Value::Null),
                    s,
                ))),
                Some(_) => Ok(in_progress()),
            },
            _ => Err(classify(status, headers, body)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RID: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/a";

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req_url() -> Url {
        Url::parse(&format!("https://arm.example{RID}?api-version=2024-05-01")).unwrap()
    }

    fn op(kind: OperationKind, method: &str) -> Operation {
        Operation {
            resource_id: RID.into(),
            method: method.into(),
            api_version: "2024-05-01".into(),
            status_url: "https://arm.example/status".into(),
            kind,
            retry_after_secs: None,
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn write_outcome_table() {
        let async_url = "https://arm.example/subscriptions/s/providers/Microsoft.Network/locations/westeurope/operations/1?api-version=2024-05-01";
        let loc_url = "https://arm.example/subscriptions/s/providers/Microsoft.Network/locations/westeurope/operationResults/1?api-version=2024-05-01";
        let updating = json!({"properties":{"provisioningState":"Updating"}}).to_string();
        let done = json!({"properties":{"provisioningState":"Succeeded"}}).to_string();
        // (method, status, headers, body) → Some((kind, url, retry)) for Accepted, None for Done.
        let cases: Vec<(
            &str,
            u16,
            Headers,
            String,
            Option<(OperationKind, String, Option<u64>)>,
        )> = vec![
            (
                "PUT",
                201,
                h(&[("Azure-AsyncOperation", async_url), ("Retry-After", "10")]),
                updating.clone(),
                Some((OperationKind::AsyncOperation, async_url.into(), Some(10))),
            ),
            (
                "DELETE",
                202,
                h(&[("Location", loc_url), ("Azure-AsyncOperation", async_url)]),
                String::new(),
                Some((OperationKind::AsyncOperation, async_url.into(), None)),
            ),
            (
                "DELETE",
                202,
                h(&[("Location", loc_url)]),
                String::new(),
                Some((OperationKind::Location, loc_url.into(), None)),
            ),
            (
                "PATCH",
                202,
                h(&[("Location", "/subscriptions/s/operationresults/9")]),
                String::new(),
                Some((
                    OperationKind::Location,
                    "https://arm.example/subscriptions/s/operationresults/9".into(),
                    None,
                )),
            ),
            // A Location that is the resource itself is not a status URL.
            (
                "PUT",
                200,
                h(&[("Location", req_url().as_str())]),
                done.clone(),
                None,
            ),
            (
                "PUT",
                201,
                h(&[]),
                updating.clone(),
                Some((
                    OperationKind::ProvisioningState,
                    req_url().to_string(),
                    None,
                )),
            ),
            ("PUT", 200, h(&[]), done.clone(), None),
            ("PUT", 200, h(&[]), json!({"name":"x"}).to_string(), None),
            ("DELETE", 204, h(&[]), String::new(), None),
            ("DELETE", 200, h(&[]), String::new(), None),
        ];
        for (method, status, hdrs, body, want) in cases {
            let got = write_outcome(
                RID,
                method,
                "2024-05-01",
                &req_url(),
                status,
                &hdrs,
                body.as_bytes(),
            );
            match (got, want) {
                (WriteOutcome::Accepted(op), Some((kind, url, ra))) => {
                    assert_eq!(op.kind, kind, "{method} {status}");
                    assert_eq!(op.status_url, url, "{method} {status}");
                    assert_eq!(op.retry_after_secs, ra);
                    assert_eq!(op.method, method);
                    assert_eq!(op.resource_id, RID);
                }
                (WriteOutcome::Done { status: s, body: b }, None) => {
                    assert_eq!(s, status);
                    assert_eq!(b.is_some(), !body.is_empty(), "{method} {status}");
                }
                (got, want) => panic!("{method} {status}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn async_operation_poll_table() {
        use OperationStatus::*;
        let o = op(OperationKind::AsyncOperation, "PUT");
        let ip = |s| InProgress { retry_after: s };
        let cases: Vec<(u16, Headers, String, Result<OperationStatus, ErrorClass>)> = vec![
            (
                200,
                h(&[("Retry-After", "3")]),
                json!({"status":"InProgress"}).to_string(),
                Ok(ip(Some(Duration::from_secs(3)))),
            ),
            (
                200,
                h(&[]),
                json!({"status":"Succeeded"}).to_string(),
                Ok(Succeeded),
            ),
            (
                200,
                h(&[]),
                json!({"status":"succeeded"}).to_string(),
                Ok(Succeeded),
            ),
            (200, h(&[]), String::new(), Ok(Succeeded)),
            (
                200,
                h(&[]),
                json!({"properties":{"provisioningState":"Succeeded"}}).to_string(),
                Ok(Succeeded),
            ),
            (
                200,
                h(&[]),
                json!({"status":"Accepted"}).to_string(),
                Ok(ip(None)),
            ),
            (202, h(&[]), String::new(), Ok(ip(None))),
            (404, h(&[]), String::new(), Err(ErrorClass::Terminal)),
            (
                429,
                h(&[("Retry-After", "7")]),
                String::new(),
                Err(ErrorClass::Throttled),
            ),
            (500, h(&[]), String::new(), Err(ErrorClass::Transient)),
            (401, h(&[]), String::new(), Err(ErrorClass::Auth)),
            (400, h(&[]), String::new(), Err(ErrorClass::Terminal)),
        ];
        for (status, hdrs, body, want) in cases {
            let got = poll_outcome(&o, status, &hdrs, body.as_bytes()).map_err(|e| e.class);
            assert_eq!(got, want, "{status} {body}");
        }
    }

    /// The emulator's (and ARM's) answer for an operation it does not know: a failed poll that
    /// says so, never "still running", on either kind of status URL.
    #[test]
    fn an_unknown_operation_is_a_not_found_poll_error() {
        let body = json!({"error":{"code":"OperationNotFound","message":"gone"}}).to_string();
        for kind in [OperationKind::AsyncOperation, OperationKind::Location] {
            for method in ["PUT", "DELETE"] {
                let e = poll_outcome(&op(kind, method), 404, &Vec::new(), body.as_bytes())
                    .expect_err("a 404 poll is not an operation state");
                assert!(e.is_not_found(), "{kind:?} {method}: {e:?}");
                assert_eq!(
                    (e.class, e.code.as_str()),
                    (ErrorClass::Terminal, "OperationNotFound")
                );
            }
        }
    }

    #[test]
    fn failed_operations_carry_the_error() {
        let o = op(OperationKind::AsyncOperation, "PUT");
        let body = json!({"status":"Failed","error":{"code":"NetcfgSubnetRangesOverlap","message":"overlap"}}).to_string();
        let OperationStatus::Failed(e) =
            poll_outcome(&o, 200, &Vec::new(), body.as_bytes()).unwrap()
        else {
            panic!("not failed")
        };
        assert_eq!(
            (e.class, e.code.as_str(), e.message.as_str(), e.status),
            (
                ErrorClass::Terminal,
                "NetcfgSubnetRangesOverlap",
                "overlap",
                None
            )
        );

        let body =
            json!({"status":"Failed","error":{"code":"InternalServerError","message":"oops"}})
                .to_string();
        let OperationStatus::Failed(e) =
            poll_outcome(&o, 200, &Vec::new(), body.as_bytes()).unwrap()
        else {
            panic!("not failed")
        };
        assert_eq!(e.class, ErrorClass::Transient);

        let body = json!({"status":"Canceled"}).to_string();
        let OperationStatus::Failed(e) =
            poll_outcome(&o, 200, &Vec::new(), body.as_bytes()).unwrap()
        else {
            panic!("not failed")
        };
        assert_eq!(
            (e.code.as_str(), e.class),
            ("Canceled", ErrorClass::Transient)
        );
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn location_poll_table() {
        use OperationStatus::*;
        let o = op(OperationKind::Location, "DELETE");
        let cases: Vec<(u16, String, Result<&str, ErrorClass>)> = vec![
            (202, String::new(), Ok("progress")),
            (404, String::new(), Err(ErrorClass::Terminal)),
            (204, String::new(), Ok("ok")),
            (
                200,
                json!({"properties":{"provisioningState":"Succeeded"}}).to_string(),
                Ok("ok"),
            ),
            (
                200,
                json!({"properties":{"provisioningState":"Failed"}}).to_string(),
                Ok("failed"),
            ),
            (
                409,
                json!({"error":{"code":"InUseSubnetCannotBeDeleted","message":"m"}}).to_string(),
                Ok("failed"),
            ),
            (503, String::new(), Err(ErrorClass::Transient)),
        ];
        for (status, body, want) in cases {
            let got = poll_outcome(&o, status, &Vec::new(), body.as_bytes()).map(|s| match s {
                InProgress { .. } => "progress",
                Succeeded => "ok",
                Failed(_) => "failed",
            });
            assert_eq!(got.map_err(|e| e.class), want, "{status} {body}");
        }
    }

    #[test]
    fn provisioning_state_poll_table() {
        use OperationStatus::*;
        let put = op(OperationKind::ProvisioningState, "PUT");
        let del = op(OperationKind::ProvisioningState, "DELETE");
        let st = |s: &str| json!({"properties":{"provisioningState":s}}).to_string();
        assert_eq!(
            poll_outcome(&put, 200, &Vec::new(), st("Updating").as_bytes()),
            Ok(InProgress { retry_after: None })
        );
        assert_eq!(
            poll_outcome(&put, 200, &Vec::new(), st("Succeeded").as_bytes()),
            Ok(Succeeded)
        );
        assert_eq!(poll_outcome(&put, 200, &Vec::new(), b"{}"), Ok(Succeeded));
        assert!(matches!(
            poll_outcome(&put, 200, &Vec::new(), st("Failed").as_bytes()),
            Ok(Failed(_))
        ));
        assert!(
            matches!(poll_outcome(&put, 404, &Vec::new(), b""), Ok(Failed(e)) if e.class == ErrorClass::Transient)
        );
        assert_eq!(
            poll_outcome(&del, 200, &Vec::new(), st("Deleting").as_bytes()),
            Ok(InProgress { retry_after: None })
        );
        assert_eq!(poll_outcome(&del, 404, &Vec::new(), b""), Ok(Succeeded));
    }

    #[test]
    fn next_poll_in_table() {
        let s = Duration::from_secs;
        let with = |ra| Operation {
            retry_after_secs: ra,
            ..op(OperationKind::AsyncOperation, "PUT")
        };
        assert_eq!(with(None).next_poll_in(None), s(10));
        assert_eq!(with(Some(3)).next_poll_in(None), s(3));
        assert_eq!(with(Some(3)).next_poll_in(Some(s(20))), s(20));
        assert_eq!(with(Some(0)).next_poll_in(None), s(1));
        assert_eq!(with(None).next_poll_in(Some(s(3600))), s(600));
    }

    #[test]
    fn operation_round_trips_through_json() {
        let o = Operation {
            retry_after_secs: Some(10),
            ..op(OperationKind::AsyncOperation, "PUT")
        };
        let s = serde_json::to_string(&o).unwrap();
        assert!(
            s.contains("\"statusUrl\"") && s.contains("\"AsyncOperation\""),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<Operation>(&s).unwrap(), o);
    }
}
