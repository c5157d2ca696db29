//! The request processor: a synchronous function from (request, now) to a response over the
//! emulated estate. HTTP and TLS live in `server`; everything here is testable without a socket.
//!
//! `front_door` authenticates, throttles and routes an ARM request; `auth` checks tokens and role
//! assignments; `resources` holds the generic read and write paths, which hand each resource type
//! to its provider (`network`, `web`, `cosmos`); `operations` runs long-running operations and
//! their polling; `features` is Microsoft.Features. `entra` and `control` (beside this module)
//! answer the token endpoint and the `/_emulator/` API.

mod auth;
mod cosmos;
mod features;
mod front_door;
mod host_names;
mod message;
mod network;
mod operations;
mod preconditions;
mod resources;
mod waf;
mod web;

pub(crate) use auth::utc_words;
pub use auth::{ARM_AUDIENCES, Principal};
pub use features::feature_key;
pub use message::{Handled, Outcome, Request, Response};
pub use network::endpoint_services;
pub use waf::{NET_WAF, render_waf_policy};

use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

use crate::config::{Config, Throttle};
use crate::error::ArmError;
use crate::faults::Fault;
use crate::ids::ArmPath;
use crate::jwt::SigningKey;
use crate::requests::RequestLog;
use crate::state::{Feature, State};
use crate::stats::Stats;
use crate::throttle::Throttler;
use crate::util::{now_ms, rfc3339, uuid4};

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
    /// The last ARM requests, for `/_emulator/requests`.
    pub requests: RequestLog,
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
            requests: RequestLog::default(),
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
        } else if let Some(p) = crate::managed_identity::Protocol::of(&lower) {
            Outcome::Respond(self.managed_identity(p, req, now))
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
}
