//! The request processor: a synchronous function from (request, now) to a response over the
//! emulated estate. HTTP and TLS live in `server`; everything here is testable without a socket.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;

use crate::config::{Config, Throttle};
use crate::enrich::{self, merge, render, strip_read_only};
use crate::error::ArmError;
use crate::faults::{self, Fault};
use crate::ids::{self, ArmPath};
use crate::jwt::{self, SigningKey};
use crate::state::{Feature, OpKind, Operation, Resource, State, op_status_at};
use crate::stats::Stats;
use crate::throttle::{Kind, Throttler};
use crate::util::{self, form_get, now_ms, rfc3339, uuid4};
use crate::validate::{self, *};

pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net",
    "https://management.core.windows.net/",
];

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, path_and_query: &str) -> Request {
        let (path, q) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            query: util::parse_form(q),
            ..Default::default()
        }
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Request {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn with_json(mut self, v: &Value) -> Request {
        self.body = v.to_string().into_bytes();
        self
    }
    fn api_version(&self) -> Option<&str> {
        form_get(&self.query, "api-version")
    }
}

#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, v: &Value) -> Response {
        Response {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: v.to_string().into_bytes(),
        }
    }
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: vec![],
            body: vec![],
        }
    }
    pub fn err(e: &ArmError) -> Response {
        let r = Response::json(e.status, &e.body());
        match e.retry_after {
            Some(s) => r.header("Retry-After", s.to_string()),
            None => r,
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Response {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub enum Outcome {
    Respond(Response),
    /// Close the connection without answering (fault injection).
    Drop,
    /// The token endpoint needs the issuer's keys from this URL (fetched by the server, then retried).
    NeedJwks {
        url: String,
        ca_file: Option<String>,
        bearer_file: Option<String>,
    },
}

pub struct Handled {
    pub outcome: Outcome,
    pub delay_ms: u64,
}

/// Who is calling ARM.
#[derive(Debug, Clone)]
pub struct Principal {
    pub object_id: String,
    pub client_id: String,
}

pub struct Engine {
    pub cfg: Config,
    pub state: State,
    pub time_scale: f64,
    /// `https://127.0.0.1:PORT` (no trailing slash).
    pub base_url: String,
    pub throttle_sizes: Throttle,
    pub throttler: Throttler,
    pub faults: Vec<Fault>,
    pub stats: Stats,
    pub key: SigningKey,
    pub jwks_cache: HashMap<String, Value>,
    pub state_path: Option<PathBuf>,
}

type R<T> = Result<T, ArmError>;

fn loc_slug(v: &Value) -> String {
    v["location"]
        .as_str()
        .unwrap_or("uksouth")
        .to_ascii_lowercase()
        .replace(' ', "")
}

fn namespace_of(rtype: &str) -> &str {
    rtype.split('/').next().unwrap_or("")
}

impl Engine {
    pub fn new(
        cfg: Config,
        time_scale: f64,
        base_url: String,
        key: SigningKey,
        state: State,
        state_path: Option<PathBuf>,
    ) -> Engine {
        let mut e = Engine {
            throttle_sizes: cfg.throttle,
            cfg,
            state,
            time_scale,
            base_url,
            throttler: Throttler::default(),
            faults: vec![],
            stats: Stats::default(),
            key,
            jwks_cache: HashMap::new(),
            state_path,
        };
        e.bootstrap();
        e
    }

    /// Applies feature registrations and seed resources on a fresh data directory.
    fn bootstrap(&mut self) {
        if !self.state.resources.is_empty()
            || !self.state.features.is_empty()
            || !self.state.operations.is_empty()
        {
            return;
        }
        for f in self.cfg.features.clone() {
            let k = feature_key(&f.subscription, &f.namespace, &f.name);
            self.state.features.insert(
                k,
                Feature {
                    subscription: f.subscription,
                    namespace: f.namespace,
                    name: f.name,
                    state: f.state,
                },
            );
        }
        for s in self.cfg.seed.clone() {
            if let Err(e) = self.seed_one(&s.id, &s.body) {
                eprintln!(
                    "arm-emulator: seed {} rejected: {} {}",
                    s.id, e.code, e.message
                );
                std::process::exit(2);
            }
        }
        self.persist();
    }

    /// Seeds go through the same PUT path (validation included), then complete at once.
    fn seed_one(&mut self, id: &str, body: &Value) -> R<()> {
        let p = ArmPath::parse(id)
            .ok_or_else(|| ArmError::bad_request("InvalidSeed", format!("not an ARM id: {id}")))?;
        let api = "seed";
        let now = now_ms();
        self.put(&p, body.clone(), api, now, None)?;
        for op in self.state.operations.values_mut() {
            op.due_ms = now;
        }
        for r in self.state.resources.values_mut() {
            for h in r.firewall_history.iter_mut() {
                h.0 = h.0.min(now);
            }
        }
        self.state.advance(now);
        self.state.operations.clear();
        Ok(())
    }

    pub fn persist(&self) {
        if let Some(p) = &self.state_path
            && let Err(e) = self.state.save(p)
        {
            // A write we cannot make durable must not be acknowledged silently.
            eprintln!("arm-emulator: cannot persist state to {}: {e}", p.display());
            std::process::exit(3);
        }
    }

    fn scaled_ms(&self, seconds: f64) -> u64 {
        (seconds * self.time_scale * 1000.0).max(0.0) as u64
    }

    /// Scaled, but never below `lro.minRetryAfterSeconds` (default 1): a `0` would let a client
    /// that ignores Retry-After look the same as one that honours it, and invite hot polling loops.
    fn retry_after(&self) -> String {
        let scaled = (self.cfg.lro.retry_after_seconds * self.time_scale).round() as u64;
        scaled.max(self.cfg.lro.min_retry_after_seconds).to_string()
    }

    /// Entry point.
    pub fn handle(&mut self, req: &Request, now: u64) -> Handled {
        if self.state.advance(now) {
            self.persist();
        }
        // Clients that join a base URL ending in '/' send `//subscriptions/…`; treat it as one slash.
        let normalised;
        let req = if req.path.starts_with("//") {
            let mut r = req.clone();
            r.path = format!("/{}", req.path.trim_start_matches('/'));
            normalised = r;
            &normalised
        } else {
            req
        };
        let request_id = uuid4();
        let mut delay_ms = 0;
        let path = req.path.clone();
        let lower = path.to_ascii_lowercase();
        let outcome = if lower.starts_with("/_emulator/") || lower == "/_emulator" {
            Outcome::Respond(self.control(req, now))
        } else if lower.starts_with("/subscriptions/") || lower.starts_with("/providers/") {
            let (o, d) = self.arm(req, now);
            delay_ms = d;
            o
        } else {
            self.entra(req, now)
        };
        let outcome = match outcome {
            Outcome::Respond(mut r) => {
                r.headers
                    .push(("x-ms-request-id".into(), request_id.clone()));
                let corr = req
                    .header("x-ms-correlation-request-id")
                    .map(str::to_string)
                    .unwrap_or_else(uuid4);
                r.headers.push(("x-ms-correlation-request-id".into(), corr));
                if let Some(c) = req.header("x-ms-client-request-id") {
                    r.headers
                        .push(("x-ms-client-request-id".into(), c.to_string()));
                }
                r.headers.push((
                    "x-ms-routing-request-id".into(),
                    format!(
                        "UKSOUTH:{}:{request_id}",
                        rfc3339(now).replace(['-', ':'], "")
                    ),
                ));
                Outcome::Respond(r)
            }
            o => o,
        };
        Handled { outcome, delay_ms }
    }

    // ---------------------------------------------------------------- ARM front door

    fn arm(&mut self, req: &Request, now: u64) -> (Outcome, u64) {
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
                self.stats.record(&req.method, &rtype, &principal_name, 0);
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
                self.stats
                    .record(&req.method, &rtype, &principal_name, status);
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
            self.stats.record(&req.method, &rtype, &principal_name, 0);
            return (Outcome::Drop, delay);
        }
        self.stats
            .record(&req.method, &rtype, &principal_name, resp.status);
        (Outcome::Respond(resp), delay)
    }

    fn authenticate(&self, req: &Request, now: u64) -> R<Principal> {
        let Some(h) = req.header("authorization") else {
            return Err(ArmError::new(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ));
        };
        let Some(token) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        else {
            return Err(ArmError::new(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            ));
        };
        let invalid = || {
            ArmError::new(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )
        };
        let d = jwt::decode(token).map_err(|_| invalid())?;
        d.verify(&json!({"keys": [self.key.jwk()]})).map_err(|_| {
            ArmError::new(
                401,
                "InvalidAuthenticationToken",
                "The access token has an invalid signature.",
            )
        })?;
        let aud = d.claims["aud"].as_str().unwrap_or("");
        if !ARM_AUDIENCES.contains(&aud) {
            return Err(ArmError::new(
                401,
                "InvalidAuthenticationTokenAudience",
                format!(
                    "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."
                ),
            ));
        }
        let exp = d.claims["exp"].as_u64().unwrap_or(0);
        if exp * 1000 <= now {
            return Err(ArmError::new(
                401,
                "ExpiredAuthenticationToken",
                format!(
                    "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                    utc_words(exp * 1000),
                    utc_words(now)
                ),
            ));
        }
        Ok(Principal {
            object_id: d.claims["oid"].as_str().unwrap_or("").to_string(),
            client_id: d.claims["appid"].as_str().unwrap_or("").to_string(),
        })
    }

    fn authorize(&self, p: &Principal, scope: &str, action: &str, verb: Kind) -> R<()> {
        let ok = self.cfg.role_assignments.iter().any(|ra| {
            (ra.principal.eq_ignore_ascii_case(&p.object_id)
                || ra.principal.eq_ignore_ascii_case(&p.client_id))
                && ids::scope_covers(&ra.scope, scope)
                && ra
                    .actions
                    .iter()
                    .any(|a| a == "*" || a.eq_ignore_ascii_case(verb.word()))
        });
        if ok {
            Ok(())
        } else {
            Err(ArmError::new(
                403,
                "AuthorizationFailed",
                format!(
                    "The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                    p.object_id, p.object_id
                ),
            ))
        }
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
            // The subscription itself (clients check access with it).
            let tenant = self
                .cfg
                .tenants
                .first()
                .map(|t| t.id.clone())
                .unwrap_or_default();
            return Ok(Response::json(
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
            ));
        }
        let body = if req.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice::<Value>(&req.body).map_err(|e| {
                ArmError::bad_request(
                    "InvalidRequestContent",
                    format!(
                        "The request content was invalid and could not be deserialized: '{e}'."
                    ),
                )
            })?
        };
        let fail = fail_lro.map(|code| json!({"code": code, "message": format!("Injected failure: the operation failed with {code}."), "details": []}));
        if p.is_collection() {
            if req.method != "GET" {
                return Err(ArmError::new(
                    405,
                    "MethodNotAllowed",
                    "The collection does not support this method.",
                ));
            }
            return Ok(self.list(p, now));
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
        let if_match = req.header("if-match").map(str::to_string);
        match req.method.as_str() {
            "GET" => self.get(p, now),
            "HEAD" => Ok(if self.visible(&p.id(), now) {
                Response::empty(204)
            } else {
                Response::empty(404)
            }),
            "PUT" => {
                self.check_if_match(p, if_match.as_deref())?;
                let r = self.put(p, body, api, now, fail);
                if r.is_ok() {
                    self.persist();
                }
                r
            }
            "PATCH" => {
                let r = self.patch(p, body, api, now, fail);
                if r.is_ok() {
                    self.persist();
                }
                r
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

    fn check_if_match(&self, p: &ArmPath, if_match: Option<&str>) -> R<()> {
        let (Some(m), true) = (if_match, self.cfg.behaviour.enforce_if_match) else {
            return Ok(());
        };
        let current = self.state.get(&p.id()).map(|r| {
            if r.rtype == NET_SUBNET {
                self.state
                    .get(&ids::parent(&r.id))
                    .map(|v| v.etag.clone())
                    .unwrap_or_default()
            } else {
                r.etag.clone()
            }
        });
        match (m, current) {
            ("*", Some(_)) => Ok(()),
            (m, Some(e)) if m == e => Ok(()),
            _ => Err(ArmError::new(
                412,
                "PreconditionFailed",
                "The condition specified using HTTP conditional header(s) is not met.",
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

    // ---------------------------------------------------------------- reads

    /// Whether a resource exists for readers (a Web site being created through a 202 is not yet visible).
    fn visible(&self, id: &str, now: u64) -> bool {
        match self.state.get(id) {
            None => false,
            Some(r) => match &r.pending_op {
                Some(op) => self.state.operations.get(op).is_none_or(|o| {
                    !(o.kind == OpKind::Create
                        && r.rtype == WEB_SITE
                        && op_status_at(o, now) == "InProgress")
                }),
                None => true,
            },
        }
    }

    fn not_found(&self, p: &ArmPath) -> ArmError {
        let rtype = p.type_name();
        let rg = p.resource_group.clone().unwrap_or_default();
        if rtype == "resourceGroups" {
            return ArmError::new(
                404,
                "ResourceGroupNotFound",
                format!("Resource group '{rg}' could not be found."),
            );
        }
        if p.types.len() > 1 && rtype.starts_with("Microsoft.Network") {
            return ArmError::new(404, "NotFound", format!("Resource {} not found.", p.id()));
        }
        let name = p.names.join("/");
        ArmError::not_found(&rtype, &name, &rg)
    }

    fn get(&mut self, p: &ArmPath, now: u64) -> R<Response> {
        let id = p.id();
        let rtype = p.type_name();
        if rtype == "Microsoft.Web/sites/networkConfig" {
            let site = self
                .state
                .get(&ids::parent(&id))
                .ok_or_else(|| self.not_found(p))?;
            let Some(sid) = props(&site.body)["virtualNetworkSubnetId"].as_str() else {
                return Err(self.not_found(p));
            };
            return Ok(Response::json(
                200,
                &json!({
                    "id": id, "name": "virtualNetwork", "type": "Microsoft.Web/sites/networkConfig",
                    "location": site.body["location"], "properties": {"subnetResourceId": sid, "swiftSupported": true}
                }),
            ));
        }
        if rtype == WEB_CONFIG {
            self.ensure_config(&ids::parent(&id))
                .ok_or_else(|| self.not_found(p))?;
        }
        if !self.visible(&id, now) {
            return Err(self.not_found(p));
        }
        let r = self.state.get(&id).ok_or_else(|| self.not_found(p))?;
        let mut resp = Response::json(200, &render(&self.state, r));
        if rtype.starts_with("Microsoft.Network") {
            let etag = if rtype == NET_SUBNET {
                self.state
                    .get(&ids::parent(&id))
                    .map(|v| v.etag.clone())
                    .unwrap_or_default()
            } else {
                r.etag.clone()
            };
            resp = resp.header("ETag", etag);
        }
        Ok(resp)
    }

    fn list(&self, p: &ArmPath, now: u64) -> Response {
        let rtype = p.type_name();
        let prefix = {
            let mut q = p.clone();
            q.types.truncate(q.names.len());
            if p.namespace.is_some() && q.types.is_empty() {
                q.namespace = None;
            }
            ids::key(&q.id())
        };
        let items: Vec<Value> = self
            .state
            .resources
            .values()
            .filter(|r| {
                r.rtype.eq_ignore_ascii_case(&rtype)
                    && ids::key(&r.id).starts_with(&format!("{prefix}/"))
            })
            .filter(|r| self.visible(&r.id, now))
            .map(|r| render(&self.state, r))
            .collect();
        Response::json(200, &json!({"value": items}))
    }

    fn op_url(&self, op: &Operation, async_op: bool) -> String {
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
    fn op_poll(&mut self, p: &ArmPath, now: u64) -> R<Response> {
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

    // ---------------------------------------------------------------- writes

    fn lro_headers(&self, op: &Operation, resp: Response, with_location: bool) -> Response {
        let mut r = resp
            .header("Azure-AsyncOperation", self.op_url(op, true))
            .header("Retry-After", self.retry_after());
        if with_location {
            r = r.header("Location", self.op_url(op, false));
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn start_op(
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
        };
        self.state.operations.insert(op.id.clone(), op.clone());
        if let Some(r) = self.state.get_mut(rid) {
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

    /// Network: a write while an operation runs on the same VNet, subnet or gateway is a 409.
    fn network_conflict(&self, lock_ids: &[String], now: u64) -> R<()> {
        let mut running = self.state.running_op_on(lock_ids, now).cloned();
        if running.is_none() && self.cfg.behaviour.gateway_locks_vnet {
            for op in self.state.operations.values() {
                if op.rtype != NET_AGW || op_status_at(op, now) != "InProgress" {
                    continue;
                }
                let vnets = self
                    .state
                    .get(&op.resource_id)
                    .map(|g| gateway_vnets(&g.body))
                    .unwrap_or_default();
                if vnets.iter().any(|v| {
                    lock_ids.iter().any(|l| {
                        ids::key(l) == ids::key(v)
                            || ids::key(l).starts_with(&format!("{}/", ids::key(v)))
                    })
                }) {
                    running = Some(op.clone());
                }
            }
        }
        if let Some(op) = running {
            // Real Network RP answers 409, or 429 RetryableErrorDueToAnotherOperation (§7.3).
            let retryable = self.cfg.behaviour.network_conflict_status == 429;
            let mut e = ArmError::new(
                if retryable { 429 } else { 409 },
                if retryable {
                    "RetryableErrorDueToAnotherOperation"
                } else {
                    "AnotherOperationInProgress"
                },
                format!(
                    "Another operation on this or dependent resource is in progress. To retrieve status of the operation use uri: {}.",
                    self.op_url(&op, true)
                ),
            );
            e.details = vec![];
            if retryable {
                e.retry_after = Some(self.retry_after().parse().unwrap_or(1));
            }
            return Err(e);
        }
        Ok(())
    }

    fn cosmos_conflict(&self, id: &str, now: u64) -> R<()> {
        if self.state.running_op_on(&[id.to_string()], now).is_some() {
            let name = ArmPath::parse(id).map(|p| p.name()).unwrap_or_default();
            let status = self.cfg.behaviour.cosmos_conflict_status;
            let (code, msg) = if status == 409 {
                (
                    "AnotherOperationInProgress",
                    format!(
                        "Another operation on this or dependent resource is in progress. Account: {name}."
                    ),
                )
            } else {
                (
                    "PreconditionFailed",
                    format!(
                        "There is another user operation in progress which requires an exclusive lock on [{name}]. Please retry after sometime.\r\nActivityId: {}, Microsoft.Azure.Documents.Common/2.14.0",
                        uuid4()
                    ),
                )
            };
            return Err(ArmError::new(status, code, msg));
        }
        Ok(())
    }

    fn isolated(&self, sub: &str) -> bool {
        match self.cfg.behaviour.network_isolation.as_str() {
            "always" => true,
            "never" => false,
            _ => self
                .state
                .features
                .get(&feature_key(
                    sub,
                    "Microsoft.Network",
                    "EnableApplicationGatewayNetworkIsolation",
                ))
                .is_some_and(|f| f.state == "Registered"),
        }
    }

    fn upsert(&mut self, id: &str, rtype: &str, body: Value) -> bool {
        let etag = self.state.next_etag();
        let k = ids::key(id);
        let created = !self.state.resources.contains_key(&k);
        let r = self.state.resources.entry(k).or_insert_with(|| Resource {
            id: id.to_string(),
            rtype: rtype.to_string(),
            body: json!({}),
            provisioning_state: "Succeeded".into(),
            etag: String::new(),
            pending_op: None,
            firewall_history: vec![],
        });
        r.body = body;
        r.etag = etag;
        created
    }

    fn require_location(body: &Value) -> R<()> {
        if body["location"].as_str().is_none_or(|l| l.is_empty()) {
            return Err(ArmError::bad_request(
                "LocationRequired",
                "The location property is required for this definition.",
            ));
        }
        Ok(())
    }

    fn put(
        &mut self,
        p: &ArmPath,
        mut body: Value,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
        let rtype = p.type_name();
        let sub = p.subscription.clone();
        if !body.is_object() {
            body = json!({});
        }
        if rtype != "Microsoft.Web/sites/networkConfig" {
            strip_read_only(&rtype, &mut body);
        }
        match rtype.as_str() {
            "resourceGroups" => {
                Self::require_location(&body)?;
                body.as_object_mut().expect("object").remove("name");
                let created = self.upsert(&id, "resourceGroups", body);
                let r = self.state.get(&id).expect("just stored");
                Ok(Response::json(
                    if created { 201 } else { 200 },
                    &render(&self.state, r),
                ))
            }
            NET_VNET => {
                let existing = self.state.get(&id).cloned();
                if existing.is_none() {
                    Self::require_location(&body)?;
                }
                self.network_conflict(std::slice::from_ref(&id), now)?;
                validate::vnet_put(&self.state, &id, &body)?;
                let subnets = body
                    .get_mut("properties")
                    .and_then(|pp| pp.as_object_mut())
                    .and_then(|pp| pp.remove("subnets"));
                // Since 2023-09-01 an omitted `subnets` keeps them; a list replaces them (§1.5).
                if let Some(Value::Array(list)) = &subnets {
                    let keep: Vec<String> = list
                        .iter()
                        .filter_map(|s| {
                            s["name"]
                                .as_str()
                                .map(|n| ids::key(&format!("{id}/subnets/{n}")))
                        })
                        .collect();
                    let doomed: Vec<String> = self
                        .state
                        .children(&id, NET_SUBNET)
                        .filter(|s| !keep.contains(&ids::key(&s.id)))
                        .map(|s| s.id.clone())
                        .collect();
                    for d in &doomed {
                        validate::subnet_delete(&self.state, d)?;
                    }
                    for s in list {
                        let sid = format!("{id}/subnets/{}", s["name"].as_str().unwrap_or(""));
                        let mut sb = s.clone();
                        strip_read_only(NET_SUBNET, &mut sb);
                        validate::subnet_put(&self.state, &id, &body, &sid, &sb)?;
                    }
                    for d in doomed {
                        self.state.resources.remove(&ids::key(&d));
                    }
                    for s in list {
                        let sid = format!("{id}/subnets/{}", s["name"].as_str().unwrap_or(""));
                        let mut sb = s.clone();
                        strip_read_only(NET_SUBNET, &mut sb);
                        self.upsert(&sid, NET_SUBNET, sb);
                        self.record_endpoints(&sid, now);
                    }
                }
                let created = self.upsert(&id, NET_VNET, body.clone());
                let loc = loc_slug(&body);
                Ok(self.put_accepted(created, 201, &id, NET_VNET, &sub, &loc, api, now, fail))
            }
            NET_SUBNET => {
                let vnet_id = ids::parent(&id);
                let vnet = self.state.get(&vnet_id).cloned().ok_or_else(|| {
                    ArmError::not_found(
                        NET_VNET,
                        &p.names[0],
                        p.resource_group.as_deref().unwrap_or(""),
                    )
                })?;
                self.network_conflict(&[vnet_id.clone(), id.clone()], now)?;
                validate::subnet_put(&self.state, &vnet_id, &vnet.body, &id, &body)?;
                let created = self.upsert(&id, NET_SUBNET, body);
                self.record_endpoints(&id, now);
                let vetag = self.state.next_etag();
                if let Some(v) = self.state.get_mut(&vnet_id) {
                    v.etag = vetag;
                }
                Ok(self.put_accepted(
                    created,
                    201,
                    &id,
                    NET_SUBNET,
                    &sub,
                    &loc_slug(&vnet.body),
                    api,
                    now,
                    fail,
                ))
            }
            NET_AGW | NET_PIP => {
                let existing = self.state.get(&id).cloned();
                Self::require_location(&body)?;
                let mut locks = vec![id.clone()];
                if rtype == NET_AGW && self.cfg.behaviour.gateway_locks_vnet {
                    locks.extend(gateway_vnets(&body));
                    if let Some(e) = &existing {
                        locks.extend(gateway_vnets(&e.body));
                    }
                }
                self.network_conflict(&locks, now)?;
                if rtype == NET_AGW {
                    let isolated = self.isolated(&sub);
                    validate::gateway_put(&self.state, &id, &body, api, isolated)?;
                    if isolated
                        && props(&body)["sku"]["tier"]
                            .as_str()
                            .is_some_and(|t| t.ends_with("_v2"))
                    {
                        // Isolated gateways carry this cosmetic tag (§2.5).
                        let tags = body
                            .as_object_mut()
                            .expect("object")
                            .entry("tags")
                            .or_insert_with(|| json!({}));
                        if let Some(t) = tags.as_object_mut() {
                            t.entry("EnhancedNetworkControl").or_insert(json!("True"));
                        }
                    }
                }
                let loc = loc_slug(&body);
                let created = self.upsert(&id, &rtype, body);
                Ok(self.put_accepted(created, 201, &id, &rtype, &sub, &loc, api, now, fail))
            }
            WEB_PLAN => {
                Self::require_location(&body)?;
                // The Web RP answers 200 (or 202) to PUT, never 201.
                self.upsert(&id, WEB_PLAN, body);
                let r = self.state.get(&id).expect("stored");
                Ok(Response::json(200, &render(&self.state, r)))
            }
            WEB_SITE => {
                let existing = self.state.get(&id).cloned();
                Self::require_location(&body)?;
                let site_config = body
                    .get_mut("properties")
                    .and_then(|pp| pp.as_object_mut())
                    .and_then(|pp| pp.remove("siteConfig"));
                validate::site_put(&self.state, &id, &body)?;
                let created = self.upsert(&id, WEB_SITE, body.clone());
                self.ensure_config(&id);
                if let Some(sc) = site_config {
                    self.merge_config(&id, &sc)?;
                }
                let _ = existing;
                self.web_write_response(&id, created, api, now, fail, &loc_slug(&body))
            }
            WEB_CONFIG => {
                let site = ids::parent(&id);
                if self.state.get(&site).is_none() {
                    return Err(ArmError::not_found(
                        WEB_SITE,
                        &p.names[0],
                        p.resource_group.as_deref().unwrap_or(""),
                    ));
                }
                let mut props_new = enrich::default_site_config();
                merge(&mut props_new, props(&body));
                if let Some(o) = props_new.as_object_mut() {
                    enrich::strip_synthetic(o);
                }
                self.validate_config(&site, &props_new)?;
                let mut stored = body.clone();
                stored["properties"] = props_new;
                self.upsert(&id, WEB_CONFIG, stored);
                let r = self.state.get(&id).expect("stored");
                Ok(Response::json(200, &render(&self.state, r)))
            }
            "Microsoft.Web/sites/networkConfig" => {
                let site = ids::parent(&id);
                let Some(s) = self.state.get(&site).cloned() else {
                    return Err(ArmError::not_found(
                        WEB_SITE,
                        &p.names[0],
                        p.resource_group.as_deref().unwrap_or(""),
                    ));
                };
                let sid = props(&body)["subnetResourceId"]
                    .as_str()
                    .ok_or_else(|| {
                        ArmError::bad_request(
                            "BadRequest",
                            "properties.subnetResourceId is required.",
                        )
                    })?
                    .to_string();
                let mut merged = s.body.clone();
                merged["properties"]["virtualNetworkSubnetId"] = json!(sid);
                validate::site_put(&self.state, &site, &merged)?;
                self.upsert(&site, WEB_SITE, merged);
                Ok(Response::json(
                    200,
                    &json!({
                        "id": id, "name": "virtualNetwork", "type": "Microsoft.Web/sites/networkConfig", "location": s.body["location"],
                        "properties": {"subnetResourceId": sid, "swiftSupported": true}
                    }),
                ))
            }
            COSMOS => {
                Self::require_location(&body)?;
                let existing = self.state.get(&id).cloned();
                if existing.is_some() {
                    self.cosmos_conflict(&id, now)?;
                }
                validate::cosmos_put(&self.state, &id, &body, None, true)?;
                let loc = loc_slug(&body);
                let created = self.upsert(&id, COSMOS, body);
                self.record_firewall(&id, created, now);
                Ok(self.put_accepted(created, 200, &id, COSMOS, &sub, &loc, api, now, fail))
            }
            other => Err(ArmError::bad_request(
                "InvalidResourceType",
                format!("PUT is not supported for '{other}'."),
            )),
        }
    }

    /// Starts the PUT's operation and answers with the resource (`Updating`) and LRO headers;
    /// `created_status` is what a create answers (201 on Network, 200 on Cosmos).
    #[allow(clippy::too_many_arguments)]
    fn put_accepted(
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

    /// Cosmos: remember when the data plane will see the new firewall.
    fn record_firewall(&mut self, id: &str, created: bool, now: u64) {
        let Some(r) = self.state.get(id) else { return };
        let net = enrich::cosmos_network(props(&r.body));
        let secs = self.cfg.lro.cosmos_firewall_propagation_seconds;
        self.record_effect(id, net, secs, created, now);
    }

    /// Subnets: traffic switches to the service-endpoint identity only after a delay (§7.8).
    fn record_endpoints(&mut self, id: &str, now: u64) {
        let Some(r) = self.state.get(id) else { return };
        let services = json!(endpoint_services(&r.body));
        let secs = self.cfg.lro.service_endpoint_propagation_seconds;
        self.record_effect(id, services, secs, false, now);
    }

    /// Appends `value` to the resource's data-plane history, in force from now (`immediate`) or
    /// after the scaled delay, keeping only the entry in force and the pending ones.
    fn record_effect(
        &mut self,
        id: &str,
        value: Value,
        delay_secs: f64,
        immediate: bool,
        now: u64,
    ) {
        let delay = self.scaled_ms(delay_secs);
        let Some(r) = self.state.get_mut(id) else {
            return;
        };
        if r.firewall_history.last().map(|(_, v)| v) == Some(&value) {
            return;
        }
        let at = if immediate { now } else { now + delay };
        r.firewall_history.push((at, value));
        if let Some(i) = r.firewall_history.iter().rposition(|(t, _)| *t <= now) {
            r.firewall_history.drain(..i);
        }
    }

    fn ensure_config(&mut self, site_id: &str) -> Option<()> {
        let site = self.state.get(site_id)?.clone();
        let cid = format!("{site_id}/config/web");
        if self.state.get(&cid).is_none() {
            self.upsert(&cid, WEB_CONFIG, json!({"location": site.body["location"], "properties": enrich::default_site_config()}));
        }
        Some(())
    }

    fn merge_config(&mut self, site_id: &str, patch_props: &Value) -> R<()> {
        self.ensure_config(site_id);
        let cid = format!("{site_id}/config/web");
        let mut stored = self
            .state
            .get(&cid)
            .map(|r| r.body.clone())
            .unwrap_or(json!({"properties": {}}));
        let mut pp = patch_props.clone();
        if let Some(o) = pp.as_object_mut() {
            enrich::strip_synthetic(o);
        }
        merge(&mut stored["properties"], &pp);
        self.validate_config(site_id, &stored["properties"])?;
        self.upsert(&cid, WEB_CONFIG, stored);
        Ok(())
    }

    fn validate_config(&self, site_id: &str, cp: &Value) -> R<()> {
        for list in ["ipSecurityRestrictions", "scmIpSecurityRestrictions"] {
            for rule in cp[list].as_array().into_iter().flatten() {
                let ip = rule["ipAddress"].as_str();
                let subnet = rule["vnetSubnetResourceId"].as_str();
                if ip.is_some() && subnet.is_some() {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        "IpSecurityRestriction: specify either IpAddress or VnetSubnetResourceId, not both.",
                    ));
                }
                if let Some(sid) = subnet
                    && self.state.get(sid).is_none()
                {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        format!(
                            "IpSecurityRestriction.VnetSubnetResourceId is invalid. Subnet {sid} referenced by {site_id} was not found."
                        ),
                    ));
                }
                if let Some(pr) = rule["priority"].as_i64()
                    && !(1..=2147483647).contains(&pr)
                {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        format!("IpSecurityRestriction priority {pr} is out of range."),
                    ));
                }
                if let Some(ip) = ip
                    && !ip.eq_ignore_ascii_case("Any")
                    && !rule["tag"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case("ServiceTag"))
                    && ip
                        .split(',')
                        .any(|x| crate::cidr::Cidr::parse(x).is_none() && !x.contains(':'))
                {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        format!("IpSecurityRestriction.IpAddress '{ip}' is not a valid CIDR."),
                    ));
                }
            }
        }
        Ok(())
    }

    fn web_write_response(
        &mut self,
        id: &str,
        created: bool,
        api: &str,
        now: u64,
        fail: Option<Value>,
        loc: &str,
    ) -> R<Response> {
        if self.cfg.lro.duration_for(WEB_SITE) > 0.0 || fail.is_some() {
            // The "old model": 202 + Location; a new site stays invisible until done (§5.2).
            let sub = ArmPath::parse(id)
                .map(|p| p.subscription)
                .unwrap_or_default();
            let op = self.start_op(
                if created {
                    OpKind::Create
                } else {
                    OpKind::Update
                },
                id,
                WEB_SITE,
                &sub,
                loc,
                api,
                now,
                fail,
            );
            return Ok(Response::empty(202)
                .header("Location", self.op_url(&op, false))
                .header("Retry-After", self.retry_after()));
        }
        let r = self.state.get(id).expect("stored");
        let _ = created;
        Ok(Response::json(200, &render(&self.state, r)))
    }

    fn patch(
        &mut self,
        p: &ArmPath,
        mut body: Value,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
        let rtype = p.type_name();
        if !body.is_object() {
            body = json!({});
        }
        strip_read_only(&rtype, &mut body);
        if rtype == WEB_CONFIG {
            let site = ids::parent(&id);
            if self.state.get(&site).is_none() {
                return Err(ArmError::not_found(
                    WEB_SITE,
                    &p.names[0],
                    p.resource_group.as_deref().unwrap_or(""),
                ));
            }
            self.merge_config(&site, props(&body))?;
            let r = self.state.get(&id).expect("stored");
            return Ok(Response::json(200, &render(&self.state, r)));
        }
        let Some(existing) = self.state.get(&id).cloned() else {
            return Err(self.not_found(p));
        };
        match rtype.as_str() {
            "resourceGroups" | NET_VNET | NET_AGW | NET_PIP => {
                // Network PATCH (UpdateTags) and resource-group PATCH only touch tags.
                let mut merged = existing.body.clone();
                if let Some(t) = body.get("tags") {
                    merged["tags"] = t.clone();
                }
                self.upsert(&id, &rtype, merged);
                let r = self.state.get(&id).expect("stored");
                Ok(Response::json(200, &render(&self.state, r)))
            }
            NET_SUBNET => Err(ArmError::new(
                405,
                "MethodNotAllowed",
                "The subnet resource does not support PATCH; use PUT.",
            )),
            WEB_PLAN => {
                let mut merged = existing.body.clone();
                merge(&mut merged, &body);
                self.upsert(&id, WEB_PLAN, merged);
                let r = self.state.get(&id).expect("stored");
                Ok(Response::json(200, &render(&self.state, r)))
            }
            WEB_SITE => {
                let site_config = body
                    .get_mut("properties")
                    .and_then(|pp| pp.as_object_mut())
                    .and_then(|pp| pp.remove("siteConfig"));
                let mut merged = existing.body.clone();
                merge(&mut merged, &body);
                validate::site_put(&self.state, &id, &merged)?;
                self.upsert(&id, WEB_SITE, merged.clone());
                if let Some(sc) = site_config {
                    self.merge_config(&id, &sc)?;
                }
                self.web_write_response(&id, false, api, now, fail, &loc_slug(&merged))
            }
            COSMOS => {
                self.cosmos_conflict(&id, now)?;
                let mut merged = existing.body.clone();
                merge(&mut merged, &body);
                validate::cosmos_put(&self.state, &id, &merged, Some(&existing.body), false)?;
                self.upsert(&id, COSMOS, merged.clone());
                self.record_firewall(&id, false, now);
                let op = self.start_op(
                    OpKind::Update,
                    &id,
                    COSMOS,
                    &p.subscription,
                    &loc_slug(&merged),
                    api,
                    now,
                    fail,
                );
                let r = self.state.get(&id).expect("stored");
                let resp = Response::json(200, &render(&self.state, r));
                Ok(self.lro_headers(&op, resp, false))
            }
            other => Err(ArmError::new(
                405,
                "MethodNotAllowed",
                format!("PATCH is not supported for '{other}'."),
            )),
        }
    }

    fn delete(&mut self, p: &ArmPath, api: &str, now: u64, fail: Option<Value>) -> R<Response> {
        let id = p.id();
        let rtype = p.type_name();
        let sub = p.subscription.clone();
        if rtype == "Microsoft.Web/sites/networkConfig" {
            let site = ids::parent(&id);
            let Some(s) = self.state.get(&site).cloned() else {
                return Ok(Response::empty(204));
            };
            let mut b = s.body.clone();
            if let Some(pp) = b.get_mut("properties").and_then(Value::as_object_mut) {
                pp.remove("virtualNetworkSubnetId");
            }
            self.upsert(&site, WEB_SITE, b);
            return Ok(Response::empty(200));
        }
        if rtype == WEB_CONFIG {
            return Err(ArmError::new(
                405,
                "MethodNotAllowed",
                "config/web cannot be deleted.",
            ));
        }
        let Some(existing) = self.state.get(&id).cloned() else {
            return Ok(if rtype == "resourceGroups" {
                return Err(self.not_found(p));
            } else {
                Response::empty(204)
            });
        };
        match rtype.as_str() {
            "resourceGroups" => {
                let op = self.start_op(
                    OpKind::Delete,
                    &id,
                    "resourceGroups",
                    &sub,
                    "",
                    api,
                    now,
                    fail,
                );
                Ok(Response::empty(202)
                    .header("Location", self.op_url(&op, false))
                    .header("Retry-After", self.retry_after()))
            }
            NET_SUBNET | NET_VNET | NET_AGW | NET_PIP => {
                let mut locks = vec![id.clone()];
                if rtype == NET_SUBNET {
                    locks.push(ids::parent(&id));
                    validate::subnet_delete(&self.state, &id)?;
                }
                if rtype == NET_VNET {
                    for s in self.state.children(&id, NET_SUBNET) {
                        validate::subnet_delete(&self.state, &s.id)?;
                    }
                }
                if rtype == NET_PIP
                    && let Some(user) = crate::enrich::render_pip(&self.state, &existing)["properties"]["ipConfiguration"]["id"].as_str()
                {
                    return Err(ArmError::bad_request(
                        "PublicIPAddressCannotBeDeleted",
                        format!("Public IP address {id} can not be deleted since it is still allocated to resource {user}."),
                    ));
                }
                if rtype == NET_AGW && self.cfg.behaviour.gateway_locks_vnet {
                    locks.extend(gateway_vnets(&existing.body));
                }
                self.network_conflict(&locks, now)?;
                let loc = if rtype == NET_SUBNET {
                    self.state
                        .get(&ids::parent(&id))
                        .map(|v| loc_slug(&v.body))
                        .unwrap_or_default()
                } else {
                    loc_slug(&existing.body)
                };
                let op = self.start_op(OpKind::Delete, &id, &rtype, &sub, &loc, api, now, fail);
                Ok(self.lro_headers(&op, Response::empty(202), true))
            }
            COSMOS => {
                self.cosmos_conflict(&id, now)?;
                let op = self.start_op(
                    OpKind::Delete,
                    &id,
                    COSMOS,
                    &sub,
                    &loc_slug(&existing.body),
                    api,
                    now,
                    fail,
                );
                Ok(self.lro_headers(&op, Response::empty(202), true))
            }
            WEB_PLAN => {
                let users: Vec<String> = self
                    .state
                    .of_type(WEB_SITE)
                    .filter(|s| {
                        props(&s.body)["serverFarmId"]
                            .as_str()
                            .is_some_and(|x| ids::key(x) == ids::key(&id))
                    })
                    .map(|s| s.id.clone())
                    .collect();
                if !users.is_empty() {
                    return Err(ArmError::new(
                        409,
                        "Conflict",
                        format!(
                            "Server farm '{}' cannot be deleted because it has web app(s) {} assigned to it.",
                            p.name(),
                            users.join(",")
                        ),
                    ));
                }
                self.state.resources.remove(&ids::key(&id));
                Ok(Response::empty(200))
            }
            WEB_SITE => {
                let k = ids::key(&id);
                self.state
                    .resources
                    .retain(|rk, _| rk != &k && !rk.starts_with(&format!("{k}/")));
                Ok(Response::empty(200))
            }
            other => Err(ArmError::new(
                405,
                "MethodNotAllowed",
                format!("DELETE is not supported for '{other}'."),
            )),
        }
    }

    // ---------------------------------------------------------------- Microsoft.Features

    fn features(&mut self, req: &Request, p: &ArmPath, now: u64) -> R<Response> {
        // /subscriptions/{s}/providers/Microsoft.Features/providers/{ns}/features[/{name}[/register|unregister]]
        let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let ns = segs.get(5).copied().unwrap_or("");
        let name = segs.get(7).copied();
        let action = segs.get(8).copied();
        let sub = p.subscription.clone();
        let render_f = |f: &Feature| {
            json!({
                "id": format!("/subscriptions/{}/providers/Microsoft.Features/providers/{}/features/{}", f.subscription, f.namespace, f.name),
                "name": format!("{}/{}", f.namespace, f.name),
                "type": "Microsoft.Features/providers/features",
                "properties": {"state": f.state}
            })
        };
        let Some(name) = name else {
            let items: Vec<Value> = self
                .state
                .features
                .values()
                .filter(|f| {
                    f.subscription.eq_ignore_ascii_case(&sub)
                        && f.namespace.eq_ignore_ascii_case(ns)
                })
                .map(render_f)
                .collect();
            return Ok(Response::json(200, &json!({"value": items})));
        };
        let key = feature_key(&sub, ns, name);
        let current = self.state.features.get(&key).cloned().unwrap_or(Feature {
            subscription: sub.clone(),
            namespace: ns.to_string(),
            name: name.to_string(),
            state: "NotRegistered".into(),
        });
        match (req.method.as_str(), action.map(|a| a.to_ascii_lowercase())) {
            ("GET", None) => Ok(Response::json(200, &render_f(&current))),
            ("POST", Some(a)) if a == "register" || a == "unregister" => {
                let register = a == "register";
                let mut f = current;
                let target = if register {
                    "Registered"
                } else {
                    "NotRegistered"
                };
                if f.state != target {
                    f.state = if register {
                        "Registering"
                    } else {
                        "Unregistering"
                    }
                    .into();
                    self.state.features.insert(key.clone(), f.clone());
                    let api = req.api_version().unwrap_or("2021-07-01").to_string();
                    self.start_op(
                        if register {
                            OpKind::Register
                        } else {
                            OpKind::Unregister
                        },
                        &key,
                        "Microsoft.Features/features",
                        &sub,
                        "global",
                        &api,
                        now,
                        None,
                    );
                    self.state.advance(now);
                    f = self.state.features[&key].clone();
                }
                self.persist();
                Ok(Response::json(200, &render_f(&f)))
            }
            _ => Err(ArmError::new(
                405,
                "MethodNotAllowed",
                "Unsupported feature operation.",
            )),
        }
    }
}

/// `11/27/2026 08:00:00` — the format ARM uses in token-expiry messages.
pub(crate) fn utc_words(ms: u64) -> String {
    let s = rfc3339(ms);
    format!("{}/{}/{} {}", &s[5..7], &s[8..10], &s[0..4], &s[11..19])
}

pub fn feature_key(sub: &str, ns: &str, name: &str) -> String {
    format!("{sub}/{ns}/{name}").to_ascii_lowercase()
}

/// VNets of the subnets a gateway sits in.
fn gateway_vnets(body: &Value) -> Vec<String> {
    props(body)["gatewayIPConfigurations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["properties"]["subnet"]["id"].as_str().map(ids::parent))
        .collect()
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

impl ArmPath {
    /// For POST actions: the last path segment (`register`, `start`, …).
    pub fn action_name(&self) -> String {
        if self.types.len() > self.names.len() {
            self.types.last().cloned().unwrap_or_default()
        } else {
            "action".into()
        }
    }
}

/// The service-endpoint services of a subnet body, lower-cased and sorted.
pub fn endpoint_services(body: &Value) -> Vec<String> {
    let mut v: Vec<String> = props(body)["serviceEndpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["service"].as_str().map(|s| s.to_ascii_lowercase()))
        .collect();
    v.sort();
    v
}
