//! Microsoft.Network: virtual networks and their subnets, application gateways and public IPs,
//! the locks their long-running operations hold, and service-endpoint propagation.

use serde_json::{Value, json};

use super::features::feature_key;
use super::{Engine, R, Response, loc_slug};
use crate::enrich::strip_read_only;
use crate::error::ArmError;
use crate::ids::{self, ArmPath};
use crate::state::{OpKind, Resource, op_status_at};
use crate::validate::{self, *};

impl Engine {
    pub(super) fn put_vnet(
        &mut self,
        p: &ArmPath,
        mut body: Value,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
        let sub = p.subscription.clone();
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

    pub(super) fn put_subnet(
        &mut self,
        p: &ArmPath,
        body: Value,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
        let sub = p.subscription.clone();
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

    /// Application gateways and public IPs: a gateway also locks the VNets of its subnets.
    pub(super) fn put_gateway_or_ip(
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
        // An injected failure wins; otherwise a gateway that cannot reach the vault of its Key
        // Vault certificate fails its operation, as Azure's does (`key_vault.rs`).
        let fail = match fail {
            None if rtype == NET_AGW => crate::key_vault::fetch_failure(&self.state, &id, &body),
            f => f,
        };
        if rtype == NET_AGW {
            let isolated = self.isolated(&sub);
            validate::gateway_put(&self.state, &id, &body, api, isolated)?;
            super::waf::check_gateway(&self.state, &id, &body, existing.as_ref().map(|e| &e.body))?;
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

    pub(super) fn delete_network(
        &mut self,
        p: &ArmPath,
        existing: &Resource,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
        let rtype = p.type_name();
        let sub = p.subscription.clone();
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
            && let Some(user) = crate::enrich::render_pip(&self.state, existing)["properties"]["ipConfiguration"]["id"].as_str()
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

    /// Network: a write while an operation runs on the same VNet, subnet or gateway is a 409.
    pub(super) fn network_conflict(&self, lock_ids: &[String], now: u64) -> R<()> {
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

    /// Subnets: traffic switches to the service-endpoint identity only after a delay (§7.8).
    fn record_endpoints(&mut self, id: &str, now: u64) {
        let Some(r) = self.state.get(id) else { return };
        let services = json!(endpoint_services(&r.body));
        let secs = self.cfg.lro.service_endpoint_propagation_seconds;
        self.record_effect(id, services, secs, false, now);
    }
}

/// `POST …/applicationGateways/{name}/backendhealth` (`ApplicationGateways_BackendHealth`,
/// SPEC-NET 2025-01-01): no request body, a long-running operation with `final-state-via:
/// location`, answered 202 with `Location` (as the spec's example shows) and the health as the
/// last poll's body.
pub(super) fn is_backend_health(p: &ArmPath) -> bool {
    p.types.len() == 2
        && p.names.len() == 1
        && p.namespace
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case("Microsoft.Network"))
        && p.types[0].eq_ignore_ascii_case("applicationGateways")
        && p.types[1].eq_ignore_ascii_case("backendhealth")
}

/// How long Azure takes to answer a backend-health request [U: no documented figure; the portal
/// shows it within seconds to a minute]. Scaled by the time scale like every operation.
pub const BACKEND_HEALTH_TYPE: &str = "Microsoft.Network/applicationGateways/backendhealth";

impl Engine {
    /// The health is what the gateway's probes last found, so it is computed when the request
    /// arrives [U: how old Azure's answer may be; its probes run every `interval` seconds], and
    /// the answer is kept on the operation. An action locks nothing: the gateway can be written
    /// while it runs [U].
    pub(super) fn post_backend_health(
        &mut self,
        p: &ArmPath,
        api: &str,
        now: u64,
        fail_lro: Option<String>,
    ) -> R<Response> {
        let mut gp = p.clone();
        gp.types.truncate(1);
        let gid = gp.id();
        let Some(gw) = self.state.get(&gid).cloned() else {
            return Err(ArmError::not_found(
                NET_AGW,
                &p.names[0],
                p.resource_group.as_deref().unwrap_or(""),
            ));
        };
        let result = crate::backend_health::backend_health(&self.state, &gid, now);
        let fail = fail_lro.map(|code| json!({"code": code, "message": format!("Injected failure: the operation failed with {code}."), "details": []}));
        let op = self.start_op(
            OpKind::Action,
            &gid,
            BACKEND_HEALTH_TYPE,
            &p.subscription,
            &loc_slug(&gw.body),
            api,
            now,
            fail,
        );
        if let Some(o) = self.state.operations.get_mut(&op.id) {
            o.result = Some(result);
        }
        Ok(Response::empty(202)
            .header("Location", self.op_url(&op, false))
            .header("Retry-After", self.retry_after()))
    }
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
