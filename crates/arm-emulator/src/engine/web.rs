//! Microsoft.Web: server farms, sites, a site's `config/web` (its access restrictions) and its
//! regional VNet integration (`networkConfig/virtualNetwork`).

use serde_json::{Value, json};

use super::{Engine, R, Response, loc_slug};
use crate::enrich::{self, merge, render};
use crate::error::ArmError;
use crate::ids::{self, ArmPath};
use crate::state::{OpKind, Resource};
use crate::validate::{self, *};

/// A site's VNet integration; not a stored resource but a view of the site's `virtualNetworkSubnetId`.
pub(super) const WEB_NETWORK_CONFIG: &str = "Microsoft.Web/sites/networkConfig";

impl Engine {
    pub(super) fn get_network_config(&self, p: &ArmPath) -> R<Response> {
        let id = p.id();
        let site = self
            .state
            .get(&ids::parent(&id))
            .ok_or_else(|| self.not_found(p))?;
        let Some(sid) = props(&site.body)["virtualNetworkSubnetId"].as_str() else {
            return Err(self.not_found(p));
        };
        Ok(Response::json(
            200,
            &json!({
                "id": id, "name": "virtualNetwork", "type": "Microsoft.Web/sites/networkConfig",
                "location": site.body["location"], "properties": {"subnetResourceId": sid, "swiftSupported": true}
            }),
        ))
    }

    pub(super) fn put_plan(&mut self, p: &ArmPath, body: Value) -> R<Response> {
        let id = p.id();
        Self::require_location(&body)?;
        // The Web RP answers 200 (or 202) to PUT, never 201.
        self.upsert(&id, WEB_PLAN, body);
        let r = self.state.get(&id).expect("stored");
        Ok(Response::json(200, &render(&self.state, r)))
    }

    pub(super) fn put_site(
        &mut self,
        p: &ArmPath,
        mut body: Value,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
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
        self.web_write_response(&id, created, api, now, fail, &loc_slug(&body))
    }

    pub(super) fn put_site_config(&mut self, p: &ArmPath, body: Value) -> R<Response> {
        let id = p.id();
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

    pub(super) fn put_network_config(&mut self, p: &ArmPath, body: Value) -> R<Response> {
        let id = p.id();
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
                ArmError::bad_request("BadRequest", "properties.subnetResourceId is required.")
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

    pub(super) fn patch_site_config(&mut self, p: &ArmPath, body: &Value) -> R<Response> {
        let id = p.id();
        let site = ids::parent(&id);
        if self.state.get(&site).is_none() {
            return Err(ArmError::not_found(
                WEB_SITE,
                &p.names[0],
                p.resource_group.as_deref().unwrap_or(""),
            ));
        }
        self.merge_config(&site, props(body))?;
        let r = self.state.get(&id).expect("stored");
        Ok(Response::json(200, &render(&self.state, r)))
    }

    pub(super) fn patch_site(
        &mut self,
        p: &ArmPath,
        existing: &Resource,
        mut body: Value,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
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

    pub(super) fn delete_plan(&mut self, p: &ArmPath) -> R<Response> {
        let id = p.id();
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

    pub(super) fn delete_site(&mut self, id: &str) -> Response {
        let k = ids::key(id);
        self.state
            .resources
            .retain(|rk, _| rk != &k && !rk.starts_with(&format!("{k}/")));
        Response::empty(200)
    }

    pub(super) fn delete_network_config(&mut self, id: &str) -> Response {
        let site = ids::parent(id);
        let Some(s) = self.state.get(&site).cloned() else {
            return Response::empty(204);
        };
        let mut b = s.body.clone();
        if let Some(pp) = b.get_mut("properties").and_then(Value::as_object_mut) {
            pp.remove("virtualNetworkSubnetId");
        }
        self.upsert(&site, WEB_SITE, b);
        Response::empty(200)
    }

    pub(super) fn ensure_config(&mut self, site_id: &str) -> Option<()> {
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
        Ok(Response::json(200, &render(&self.state, r)))
    }
}
