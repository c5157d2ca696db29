//! Microsoft.Features: preview-feature registrations per subscription, registered through a
//! long-running operation (the gateway's network isolation depends on one).

use serde_json::{Value, json};

use super::{Engine, R, Request, Response};
use crate::error::ArmError;
use crate::ids::ArmPath;
use crate::state::{Feature, OpKind};

impl Engine {
    pub(super) fn features(&mut self, req: &Request, p: &ArmPath, now: u64) -> R<Response> {
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

/// The state key of a feature registration (ARM compares these case-insensitively).
pub fn feature_key(sub: &str, ns: &str, name: &str) -> String {
    format!("{sub}/{ns}/{name}").to_ascii_lowercase()
}
