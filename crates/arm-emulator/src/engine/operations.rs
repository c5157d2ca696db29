//! Long-running operations: starting one on a resource, the headers that point at it, and the two
//! polling URLs clients follow (Azure-AsyncOperation and Location).

use serde_json::{Value, json};

use super::{Engine, R, Response, namespace_of};
use crate::enrich::render;
use crate::error::ArmError;
use crate::ids::ArmPath;
use crate::state::{OpKind, Operation, op_status_at};
use crate::util::{rfc3339, uuid4};
use crate::validate::COSMOS;

impl Engine {
    pub(super) fn op_url(&self, op: &Operation, async_op: bool) -> String {
        let seg = match (op.namespace.as_str(), async_op) {
            ("Microsoft.DocumentDB", true) => "operationsStatus",
            (_, true) => "operations",
            (_, false) => "operationResults",
        };
        if op.namespace.is_empty() {
            return format!(
                "{}/subscriptions/{}/operationresults/{}?api-version={}",
                self.base_url, op.subscription, op.id, op.api_version
            );
        }
        format!(
            "{}/subscriptions/{}/providers/{}/locations/{}/{seg}/{}?api-version={}",
            self.base_url, op.subscription, op.namespace, op.location, op.id, op.api_version
        )
    }

    /// Polling: `…/operations/{id}` (Azure-AsyncOperation: always 200 with a status body) and
    /// `…/operationResults/{id}` (Location: 202 while running, then the synchronous answer).
    pub(super) fn op_poll(&mut self, p: &ArmPath, now: u64) -> R<Response> {
        let seg = if p.namespace.is_some() {
            p.types.get(1).cloned().unwrap_or_default()
        } else {
            "operationresults".into()
        };
        let op_id = p.names.last().cloned().unwrap_or_default();
        let Some(op) = self.state.operations.get(&op_id).cloned() else {
            return Err(ArmError::new(
                404,
                "OperationNotFound",
                format!("The operation '{op_id}' could not be found."),
            ));
        };
        let status = op_status_at(&op, now);
        if seg.eq_ignore_ascii_case("operationresults") {
            if status == "InProgress" {
                return Ok(Response::empty(202)
                    .header("Location", self.op_url(&op, false))
                    .header("Retry-After", self.retry_after()));
            }
            if status == "Failed" {
                let e = op.error.clone().unwrap_or(
                    json!({"code": "InternalServerError", "message": "The operation failed."}),
                );
                let code = e["code"].as_str().unwrap_or("");
                let st = if code.contains("Internal") { 500 } else { 400 };
                return Ok(Response::json(st, &json!({"error": e})));
            }
            return Ok(match op.kind {
                OpKind::Delete => Response::empty(204),
                OpKind::Action => Response::json(200, op.result.as_ref().unwrap_or(&json!({}))),
                _ => match self.state.get(&op.resource_id) {
                    Some(r) => Response::json(200, &render(&self.state, r)),
                    None => Response::empty(204),
                },
            });
        }
        let mut body = json!({
            "id": format!("/subscriptions/{}/providers/{}/locations/{}/{seg}/{}", op.subscription, op.namespace, op.location, op.id),
            "name": op.id,
            "status": status,
            "startTime": rfc3339(op.start_ms),
        });
        let mut resp_headers = vec![];
        if status == "InProgress" {
            let total = op.due_ms.saturating_sub(op.start_ms).max(1) as f64;
            body["percentComplete"] = json!(
                ((now.saturating_sub(op.start_ms)) as f64 / total * 100.0)
                    .min(99.0)
                    .floor()
            );
            resp_headers.push(("Retry-After".to_string(), self.retry_after()));
        } else {
            body["endTime"] = json!(rfc3339(op.end_ms.unwrap_or(op.due_ms)));
            body["percentComplete"] = json!(100);
        }
        if status == "Failed" {
            body["error"] = op.error.clone().unwrap_or(json!({"code": "InternalServerError", "message": "The operation failed.", "details": []}));
        }
        let mut r = Response::json(200, &body);
        r.headers.extend(resp_headers);
        Ok(r)
    }

    pub(super) fn lro_headers(
        &self,
        op: &Operation,
        resp: Response,
        with_location: bool,
    ) -> Response {
        let mut r = resp
            .header("Azure-AsyncOperation", self.op_url(op, true))
            .header("Retry-After", self.retry_after());
        if with_location {
            r = r.header("Location", self.op_url(op, false));
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_op(
        &mut self,
        kind: OpKind,
        rid: &str,
        rtype: &str,
        sub: &str,
        location: &str,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> Operation {
        let duration = self.cfg.lro.duration_for(rtype);
        let op = Operation {
            id: uuid4(),
            kind,
            resource_id: rid.to_string(),
            rtype: rtype.to_string(),
            subscription: sub.to_string(),
            namespace: if rtype == "resourceGroups" {
                String::new()
            } else {
                namespace_of(rtype).to_string()
            },
            location: location.to_string(),
            api_version: api.to_string(),
            start_ms: now,
            due_ms: now + self.scaled_ms(duration),
            status: "InProgress".into(),
            end_ms: None,
            error: fail,
            result: None,
        };
        self.state.operations.insert(op.id.clone(), op.clone());
        // An action reads: the resource is neither locked nor marked as changing.
        if let Some(r) = self.state.get_mut(rid).filter(|_| kind != OpKind::Action) {
            r.pending_op = Some(op.id.clone());
            r.provisioning_state = match kind {
                OpKind::Delete => "Deleting".into(),
                OpKind::Create if rtype == COSMOS => "Creating".into(),
                _ => "Updating".into(),
            };
        }
        // Keep the operation log short: drop finished operations older than an hour of real time.
        let horizon = now.saturating_sub(3_600_000);
        self.state
            .operations
            .retain(|_, o| o.status == "InProgress" || o.end_ms.unwrap_or(u64::MAX) >= horizon);
        op
    }

    /// Starts the PUT's operation and answers with the resource (`Updating`) and LRO headers;
    /// `created_status` is what a create answers (201 on Network, 200 on Cosmos).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_accepted(
        &mut self,
        created: bool,
        created_status: u16,
        id: &str,
        rtype: &str,
        sub: &str,
        loc: &str,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> Response {
        let kind = if created {
            OpKind::Create
        } else {
            OpKind::Update
        };
        let op = self.start_op(kind, id, rtype, sub, loc, api, now, fail);
        let r = self.state.get(id).expect("stored");
        let status = if created { created_status } else { 200 };
        let resp = Response::json(status, &render(&self.state, r));
        self.lro_headers(&op, resp, false)
    }
}
