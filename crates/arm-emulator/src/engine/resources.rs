//! The generic resource paths: visibility, GET and list, storing a body, and the PUT, PATCH and
//! DELETE entry points that hand each type to its provider. Resource groups are handled here.

use serde_json::{Value, json};

use super::host_names::{WEB_CERTIFICATE, WEB_HOST_NAME_BINDING};
use super::web::WEB_NETWORK_CONFIG;
use super::{Engine, R, Request, Response};
use crate::enrich::{merge, render, strip_read_only};
use crate::error::ArmError;
use crate::ids::{self, ArmPath};
use crate::state::{OpKind, Resource, op_status_at};
use crate::validate::*;

impl Engine {
    /// Whether a resource exists for readers (a Web site being created through a 202 is not yet visible).
    pub(super) fn visible(&self, id: &str, now: u64) -> bool {
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

    pub(super) fn not_found(&self, p: &ArmPath) -> ArmError {
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

    pub(super) fn get(&mut self, p: &ArmPath, now: u64) -> R<Response> {
        let id = p.id();
        let rtype = p.type_name();
        if rtype == WEB_NETWORK_CONFIG {
            return self.get_network_config(p);
        }
        if rtype == WEB_CONFIG {
            self.ensure_config(&ids::parent(&id))
                .ok_or_else(|| self.not_found(p))?;
        }
        if !self.visible(&id, now) {
            return Err(self.not_found(p));
        }
        let r = self.state.get(&id).ok_or_else(|| self.not_found(p))?;
        let resp = Response::json(200, &render(&self.state, r));
        Ok(self.with_etag(resp, &id))
    }

    pub(super) fn list(&self, req: &Request, p: &ArmPath, now: u64) -> R<Response> {
        let rtype = p.type_name();
        // "Get resource collection under resource group": "If the resource group does not exist,
        // 404 (NotFound) will be returned by the proxy" (ARM RPC `resource-api-reference.md`).
        if let Some(rg) = &p.resource_group
            && !self.visible(
                &format!("/subscriptions/{}/resourceGroups/{rg}", p.subscription),
                now,
            )
        {
            return Err(ArmError::new(
                404,
                "ResourceGroupNotFound",
                format!("Resource group '{rg}' could not be found."),
            ));
        }
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
        if rtype.eq_ignore_ascii_case(WEB_SITE) {
            return self.sites_page(req, items);
        }
        Ok(Response::json(200, &json!({"value": items})))
    }

    /// `WebApps_List` and `WebApps_ListByResourceGroup` (Web 2024-11-01 `WebApps.json`) are
    /// `x-ms-pageable` with `nextLinkName: nextLink` (a `WebAppCollection`): a page of
    /// `behaviour.sitesPageSize` sites and, while more remain, a `nextLink` to the rest. The
    /// `$skipToken` in it is the emulator's own form; Azure's is opaque to clients, who follow the
    /// link as it is. Cosmos DB's lists (`nextLinkName: null`) and the others answer in one page.
    fn sites_page(&self, req: &Request, items: Vec<Value>) -> R<Response> {
        let size = self.cfg.behaviour.sites_page_size.max(1);
        let skip = match crate::util::form_get(&req.query, "$skipToken") {
            None => 0,
            Some(t) => t.parse::<usize>().map_err(|_| {
                ArmError::bad_request(
                    "InvalidSkipToken",
                    format!("The skip token '{t}' is not valid."),
                )
            })?,
        };
        let total = items.len();
        let page: Vec<Value> = items.into_iter().skip(skip).take(size).collect();
        let mut body = json!({"value": page});
        if skip + size < total {
            body["nextLink"] = json!(format!(
                "{}{}?api-version={}&$skipToken={}",
                self.base_url,
                req.path.trim_end_matches('/'),
                req.api_version().unwrap_or_default(),
                skip + size
            ));
        }
        Ok(Response::json(200, &body))
    }

    /// `Resources_ListByResourceGroup` (`GET …/resourceGroups/{rg}/resources`) and
    /// `Resources_List` (`GET /subscriptions/{s}/resources`), Microsoft.Resources
    /// `resources/stable/2021-04-01/resources.json`: every top-level resource (never a child such
    /// as a subnet or `config/web`) as a `GenericResourceExpanded`: the envelope without
    /// `properties`. A missing group is 404 `ResourceGroupNotFound`. `$filter`, `$expand` and
    /// `$top` are refused rather than ignored: ignoring them would answer more than Azure does.
    pub(super) fn list_generic(&self, req: &Request, p: &ArmPath, now: u64) -> R<Response> {
        if let Some((k, _)) = req.query.iter().find(|(k, _)| k.starts_with('$')) {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!("[emulator] {k} is not emulated on resource lists."),
            ));
        }
        let scope = match &p.resource_group {
            Some(rg) => {
                let group = format!("/subscriptions/{}/resourceGroups/{rg}", p.subscription);
                if !self.visible(&group, now) {
                    return Err(ArmError::new(
                        404,
                        "ResourceGroupNotFound",
                        format!("Resource group '{rg}' could not be found."),
                    ));
                }
                group
            }
            None => format!("/subscriptions/{}", p.subscription),
        };
        let prefix = format!("{}/", ids::key(&scope));
        let items: Vec<Value> = self
            .state
            .resources
            .values()
            .filter(|r| {
                r.rtype.matches('/').count() == 1
                    && !r.rtype.starts_with("Microsoft.Features")
                    && ids::key(&r.id).starts_with(&prefix)
                    && self.visible(&r.id, now)
            })
            .map(|r| {
                let full = render(&self.state, r);
                let mut g = json!({
                    "id": r.id,
                    "name": r.id.rsplit('/').next().unwrap_or_default(),
                    "type": r.rtype,
                });
                for k in [
                    "location",
                    "tags",
                    "kind",
                    "sku",
                    "identity",
                    "managedBy",
                    "plan",
                ] {
                    if let Some(v) = full.get(k).filter(|v| !v.is_null()) {
                        g[k] = v.clone();
                    }
                }
                g
            })
            .collect();
        Ok(Response::json(200, &json!({"value": items})))
    }

    pub(super) fn upsert(&mut self, id: &str, rtype: &str, body: Value) -> bool {
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
        r.body = crate::state::without_secrets(rtype, body);
        r.etag = etag;
        created
    }

    pub(super) fn require_location(body: &Value) -> R<()> {
        if body["location"].as_str().is_none_or(|l| l.is_empty()) {
            return Err(ArmError::bad_request(
                "LocationRequired",
                "The location property is required for this definition.",
            ));
        }
        Ok(())
    }

    pub(super) fn put(
        &mut self,
        p: &ArmPath,
        mut body: Value,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let rtype = p.type_name();
        if !body.is_object() {
            body = json!({});
        }
        crate::body_rules::check(&rtype, "PUT", &body)?;
        if rtype != WEB_NETWORK_CONFIG {
            strip_read_only(&rtype, &mut body);
        }
        match rtype.as_str() {
            "resourceGroups" => self.put_resource_group(p, body),
            NET_VNET => self.put_vnet(p, body, api, now, fail),
            NET_SUBNET => self.put_subnet(p, body, api, now, fail),
            NET_AGW | NET_PIP => self.put_gateway_or_ip(p, body, api, now, fail),
            WEB_PLAN => self.put_plan(p, body),
            WEB_SITE => self.put_site(p, body, api, now, fail),
            WEB_CONFIG => self.put_site_config(p, body),
            WEB_NETWORK_CONFIG => self.put_network_config(p, body),
            WEB_CERTIFICATE => self.put_certificate(p, body),
            WEB_HOST_NAME_BINDING => self.put_host_name_binding(p, body),
            COSMOS => self.put_cosmos(p, body, api, now, fail),
            super::NET_WAF => self.put_waf_policy(p, body),
            other => Err(ArmError::bad_request(
                "InvalidResourceType",
                format!("PUT is not supported for '{other}'."),
            )),
        }
    }

    fn put_resource_group(&mut self, p: &ArmPath, mut body: Value) -> R<Response> {
        let id = p.id();
        Self::require_location(&body)?;
        body.as_object_mut().expect("object").remove("name");
        let created = self.upsert(&id, "resourceGroups", body);
        let r = self.state.get(&id).expect("just stored");
        Ok(Response::json(
            if created { 201 } else { 200 },
            &render(&self.state, r),
        ))
    }

    pub(super) fn patch(
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
        crate::body_rules::check(&rtype, "PATCH", &body)?;
        strip_read_only(&rtype, &mut body);
        if rtype == WEB_CONFIG {
            return self.patch_site_config(p, &body);
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
            WEB_SITE => self.patch_site(p, &existing, body, api, now, fail),
            COSMOS => self.patch_cosmos(p, &existing, &body, api, now, fail),
            other => Err(ArmError::new(
                405,
                "MethodNotAllowed",
                format!("PATCH is not supported for '{other}'."),
            )),
        }
    }

    pub(super) fn delete(
        &mut self,
        p: &ArmPath,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
        let rtype = p.type_name();
        if rtype == WEB_NETWORK_CONFIG {
            return Ok(self.delete_network_config(&id));
        }
        if rtype == WEB_CONFIG {
            return Err(ArmError::new(
                405,
                "MethodNotAllowed",
                "config/web cannot be deleted.",
            ));
        }
        let Some(existing) = self.state.get(&id).cloned() else {
            return if rtype == "resourceGroups" {
                Err(self.not_found(p))
            } else {
                Ok(Response::empty(204))
            };
        };
        match rtype.as_str() {
            "resourceGroups" => {
                let op = self.start_op(
                    OpKind::Delete,
                    &id,
                    "resourceGroups",
                    &p.subscription,
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
                self.delete_network(p, &existing, api, now, fail)
            }
            COSMOS => self.delete_cosmos(p, &existing, api, now, fail),
            super::NET_WAF => self.delete_waf_policy(p, &existing, api, now, fail),
            WEB_PLAN => self.delete_plan(p),
            WEB_SITE => Ok(self.delete_site(&id)),
            WEB_CERTIFICATE => self.delete_certificate(p),
            WEB_HOST_NAME_BINDING => {
                self.state.resources.remove(&ids::key(&id));
                Ok(Response::empty(200))
            }
            other => Err(ArmError::new(
                405,
                "MethodNotAllowed",
                format!("DELETE is not supported for '{other}'."),
            )),
        }
    }
}
