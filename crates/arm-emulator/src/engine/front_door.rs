//! The ARM front door: fault injection, authentication, throttling, api-version and role checks,
//! then routing to the operation poller, Microsoft.Features or the resource paths.

use serde_json::{Value, json};

use super::{Engine, Outcome, Principal, R, Request, Response, namespace_of};
use crate::error::ArmError;
use crate::faults::{self, Fault};
use crate::ids::{self, ArmPath};
use crate::throttle::Kind;

impl Engine {
    pub(super) fn arm(&mut self, req: &Request, now: u64) -> (Outcome, u64) {
        let parsed = ArmPath::parse(&req.path);
        let rtype = parsed
            .as_ref()
            .map(stats_type)
            .unwrap_or_else(|| "unknown".into());
        let auth = self.authenticate(req, now);
        let principal_name = auth
            .as_ref()
            .map(|p| p.object_id.clone())
            .unwrap_or_else(|_| "anonymous".into());
        let mut fail_lro = None;
        let mut delay = 0;
        let mut drop_after = false;
        if let Some(f) = faults::take(&mut self.faults, &req.method, &req.path) {
            delay = f.latency_ms.unwrap_or(0);
            drop_after = f.drop_connection && f.after_processing;
            if f.drop_connection && !f.after_processing {
                self.count(req, &rtype, &principal_name, 0, now);
                return (Outcome::Drop, delay);
            }
            if let Some(status) = f.status {
                let code = f
                    .code
                    .clone()
                    .unwrap_or_else(|| Fault::default_code(status).to_string());
                let msg = f
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("Injected fault: {code}."));
                let mut r = Response::err(&ArmError::new(status, &code, msg));
                if let Some(ra) = f.retry_after {
                    r = r.header("Retry-After", ra.to_string());
                }
                if status == 401 {
                    r = r.header(
                        "WWW-Authenticate",
                        format!(
                            "Bearer authorization_uri=\"{}/{}\", error=\"invalid_token\"",
                            self.base_url,
                            self.cfg
                                .tenants
                                .first()
                                .map(|t| t.id.as_str())
                                .unwrap_or("")
                        ),
                    );
                }
                self.count(req, &rtype, &principal_name, status, now);
                return (Outcome::Respond(r), delay);
            }
            fail_lro = f.fail_lro.clone();
        }
        let resp = match auth {
            Err(e) => {
                let tenant = self
                    .cfg
                    .tenants
                    .first()
                    .map(|t| t.id.clone())
                    .unwrap_or_default();
                Response::err(&e).header("WWW-Authenticate", format!("Bearer authorization_uri=\"{}/{tenant}\", error=\"invalid_token\", error_description=\"{}\"", self.base_url, e.code))
            }
            Ok(principal) => match self.arm_authenticated(req, parsed, &principal, now, fail_lro) {
                Ok(r) => r,
                Err(e) => Response::err(&e),
            },
        };
        if drop_after {
            self.count(req, &rtype, &principal_name, 0, now);
            return (Outcome::Drop, delay);
        }
        self.count(req, &rtype, &principal_name, resp.status, now);
        (Outcome::Respond(resp), delay)
    }

    /// Counts one ARM request in the stats and records it in the request log.
    fn count(&mut self, req: &Request, rtype: &str, principal: &str, status: u16, now: u64) {
        self.stats.record(&req.method, rtype, principal, status);
        self.requests.record(crate::requests::Entry {
            time: crate::util::rfc3339(now),
            principal,
            method: &req.method,
            path: &req.path,
            resource_type: rtype,
            api_version: req.api_version(),
            status,
            body: &req.body,
        });
    }

    fn arm_authenticated(
        &mut self,
        req: &Request,
        parsed: Option<ArmPath>,
        principal: &Principal,
        now: u64,
        fail_lro: Option<String>,
    ) -> R<Response> {
        let Some(p) = parsed else {
            return Err(ArmError::new(
                404,
                "InvalidResourceType",
                format!(
                    "The resource type could not be found for path '{}'.",
                    req.path
                ),
            ));
        };
        if !self.cfg.subscription_exists(&p.subscription) {
            return Err(ArmError::new(
                404,
                "SubscriptionNotFound",
                format!("The subscription '{}' could not be found.", p.subscription),
            ));
        }
        let kind = Kind::of_method(&req.method);
        let is_op_poll = p.namespace.is_some()
            && p.types
                .first()
                .is_some_and(|t| t.eq_ignore_ascii_case("locations"))
            || p.namespace.is_none()
                && p.resource_group.is_none()
                && p.types
                    .first()
                    .is_some_and(|t| t.eq_ignore_ascii_case("operationresults"));
        // Throttle before anything else that costs the RP (ARM's front door does the same).
        match self.throttler.take(
            &self.throttle_sizes,
            &p.subscription,
            &principal.object_id,
            kind,
            now,
        ) {
            Ok(remaining) => {
                let r = self.arm_dispatch(req, &p, principal, kind, is_op_poll, now, fail_lro);
                r.map(|resp| resp.header(kind.header(), remaining.to_string()))
            }
            Err(retry) => {
                let e = ArmError::new(
                    429,
                    "SubscriptionRequestsThrottled",
                    format!(
                        "Number of '{}' requests for subscription '{}' actor '{}' exceeded. Please try again after '{retry}' seconds after the current throttling window expires.",
                        kind.word(),
                        p.subscription,
                        principal.object_id
                    ),
                );
                Ok(Response::err(&e)
                    .header("Retry-After", retry.to_string())
                    .header(kind.header(), "0"))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn arm_dispatch(
        &mut self,
        req: &Request,
        p: &ArmPath,
        principal: &Principal,
        kind: Kind,
        is_op_poll: bool,
        now: u64,
        fail_lro: Option<String>,
    ) -> R<Response> {
        if is_op_poll {
            return self.op_poll(p, now);
        }
        let rtype = p.type_name();
        let api = req.api_version().ok_or_else(|| {
            ArmError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        })?;
        self.check_api_version(&rtype, api)?;
        let action = match (rtype.as_str(), req.method.as_str()) {
            ("resourceGroups", _) => format!(
                "Microsoft.Resources/subscriptions/resourceGroups/{}",
                kind.word()
            ),
            // `…/applicationGateways/{n}/backendhealth`: the type already ends with the action.
            (t, "POST") if p.types.len() > p.names.len() => format!("{t}/action"),
            (t, "POST") => format!("{t}/{}/action", p.action_name()),
            (t, _) => format!("{t}/{}", kind.word()),
        };
        let scope = if p.is_collection() {
            req.path.trim_end_matches('/').to_string()
        } else {
            p.id()
        };
        self.authorize(principal, &scope, &action, kind)?;
        if p.namespace
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case("Microsoft.Features"))
        {
            return self.features(req, p, now);
        }
        if rtype == "subscriptions" && req.method == "GET" {
            return Ok(self.subscription(p));
        }
        if req.method == "POST" && super::network::is_backend_health(p) {
            let r = self.post_backend_health(p, api, now, fail_lro);
            if r.is_ok() {
                self.persist();
            }
            return r;
        }
        let body = request_body(req)?;
        let fail = fail_lro.map(|code| json!({"code": code, "message": format!("Injected failure: the operation failed with {code}."), "details": []}));
        if p.is_collection() {
            if req.method != "GET" {
                return Err(ArmError::new(
                    405,
                    "MethodNotAllowed",
                    "The collection does not support this method.",
                ));
            }
            if p.namespace.is_none() && rtype.eq_ignore_ascii_case("resources") {
                return self.list_generic(req, p, now);
            }
            return self.list(req, p, now);
        }
        if rtype != "resourceGroups" && ids::canonical_type(&rtype).is_none() {
            return Err(ArmError::bad_request(
                "InvalidResourceType",
                format!("The resource type '{rtype}' is not emulated."),
            ));
        }
        // Everything in a resource group needs the group.
        if rtype != "resourceGroups"
            && let Some(rg) = &p.resource_group
            && self
                .state
                .get(&format!(
                    "/subscriptions/{}/resourceGroups/{rg}",
                    p.subscription
                ))
                .is_none()
        {
            return Err(ArmError::new(
                404,
                "ResourceGroupNotFound",
                format!("Resource group '{rg}' could not be found."),
            ));
        }
        self.by_method(req, p, body, api, now, fail)
    }

    /// The subscription itself (clients check access with it).
    fn subscription(&self, p: &ArmPath) -> Response {
        let tenant = self
            .cfg
            .tenants
            .first()
            .map(|t| t.id.clone())
            .unwrap_or_default();
        Response::json(
            200,
            &json!({
                "id": format!("/subscriptions/{}", p.subscription),
                "subscriptionId": p.subscription,
                "tenantId": tenant,
                "displayName": format!("arm-emulator {}", p.subscription),
                "state": "Enabled",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
                "authorizationSource": "RoleBased"
            }),
        )
    }

    /// One resource, by method; a write that succeeds is persisted before it is answered.
    fn by_method(
        &mut self,
        req: &Request,
        p: &ArmPath,
        body: Value,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        if matches!(req.method.as_str(), "PUT" | "PATCH" | "DELETE") {
            self.check_preconditions(req, p, now)?;
        }
        match req.method.as_str() {
            "GET" => self.get(p, now),
            "HEAD" => Ok(if self.visible(&p.id(), now) {
                Response::empty(204)
            } else {
                Response::empty(404)
            }),
            "PUT" => {
                let r = self.put(p, body, api, now, fail);
                if r.is_ok() {
                    self.persist();
                }
                r.map(|resp| self.with_etag(resp, &p.id()))
            }
            "PATCH" => {
                let r = self.patch(p, body, api, now, fail);
                if r.is_ok() {
                    self.persist();
                }
                r.map(|resp| self.with_etag(resp, &p.id()))
            }
            "DELETE" => {
                let r = self.delete(p, api, now, fail);
                if r.is_ok() {
                    self.persist();
                }
                r
            }
            _ => Err(ArmError::new(
                405,
                "MethodNotAllowed",
                format!("The method '{}' is not supported.", req.method),
            )),
        }
    }

    pub fn accepted_api_versions(&self, rtype: &str) -> Vec<String> {
        let ns = namespace_of(rtype).to_ascii_lowercase();
        let builtin: &[&str] = match ns.as_str() {
            "microsoft.network" => &[
                "2023-09-01",
                "2023-11-01",
                "2024-01-01",
                "2024-03-01",
                "2024-05-01",
                "2024-07-01",
                "2024-10-01",
                "2025-01-01",
                "2025-03-01",
                "2025-05-01",
                "2025-07-01",
                "2025-09-01",
                "2026-01-01",
                "2026-03-01",
            ],
            "microsoft.web" => &[
                "2023-12-01",
                "2024-04-01",
                "2024-11-01",
                "2025-03-01",
                "2025-05-01",
                "2026-03-15",
                "2026-07-15",
                "2026-09-01",
            ],
            "microsoft.documentdb" => &[
                "2024-08-15",
                "2024-11-15",
                "2025-04-15",
                "2025-10-15",
                "2026-03-15",
                "2026-07-15",
            ],
            "microsoft.features" => &["2015-12-01", "2021-07-01"],
            _ => &[
                "2021-04-01",
                "2022-09-01",
                "2023-07-01",
                "2024-03-01",
                "2024-07-01",
                "2024-11-01",
                "2025-01-01",
                "2025-03-01",
                "2025-04-01",
            ],
        };
        let mut v: Vec<String> = builtin.iter().map(|s| s.to_string()).collect();
        for (k, extra) in &self.cfg.api_versions {
            if k.eq_ignore_ascii_case(rtype) || k.eq_ignore_ascii_case(namespace_of(rtype)) {
                v.extend(extra.iter().cloned());
            }
        }
        v
    }

    fn check_api_version(&self, rtype: &str, api: &str) -> R<()> {
        let ok = self.accepted_api_versions(rtype);
        if ok.iter().any(|v| v == api) {
            return Ok(());
        }
        Err(ArmError::bad_request(
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location 'uksouth' and API version '{api}' for type '{}'. The supported api-versions are '{}'. The supported locations are 'uksouth, ukwest, westeurope, northeurope'.",
                rtype.split_once('/').map(|x| x.1).unwrap_or(rtype),
                ok.join(", ")
            ),
        ))
    }
}

/// The JSON body, or `Null` when there is none.
fn request_body(req: &Request) -> R<Value> {
    if req.body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice::<Value>(&req.body).map_err(|e| {
        ArmError::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })
}

fn stats_type(p: &ArmPath) -> String {
    if p.namespace.is_some()
        && p.types
            .first()
            .is_some_and(|t| t.eq_ignore_ascii_case("locations"))
    {
        return format!(
            "{}/locations/{}",
            p.namespace.as_deref().unwrap_or(""),
            p.types.get(1).map(String::as_str).unwrap_or("")
        );
    }
    if p.namespace
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case("Microsoft.Features"))
    {
        return "Microsoft.Features/features".into();
    }
    p.type_name()
}
