//! The control API under `/_emulator/`: stats, the request log, faults, throttle sizes, minted tokens, runtime
//! role assignments, the exposure oracle, and debugging views. Loopback use only: no auth.

use serde_json::{Value, json};

use crate::config::Throttle;
use crate::engine::{Engine, Request, Response};
use crate::faults::Fault;
use crate::ids;
use crate::state::op_status_at;

impl Engine {
    pub(crate) fn control(&mut self, req: &Request, now: u64) -> Response {
        let path = req.path.trim_end_matches('/').to_ascii_lowercase();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let bad = |m: String| {
            Response::json(400, &json!({"error": {"code": "BadRequest", "message": m}}))
        };
        if let Some(r) = self.request_log(req, &path) {
            return r;
        }
        match (req.method.as_str(), path.as_str()) {
            ("GET", "/_emulator/health") => Response::json(200, &json!({"ok": true})),
            ("GET", "/_emulator/stats") => Response::json(200, &self.stats.to_json()),
            ("DELETE", "/_emulator/stats") | ("POST", "/_emulator/stats/reset") => {
                self.stats.reset();
                Response::json(200, &self.stats.to_json())
            }
            ("GET", "/_emulator/faults") => Response::json(200, &json!({"faults": self.faults})),
            ("POST", "/_emulator/faults") => {
                let list = if body.is_array() {
                    body.clone()
                } else {
                    json!([body])
                };
                match serde_json::from_value::<Vec<Fault>>(list) {
                    Ok(fs) => {
                        self.faults.extend(fs);
                        Response::json(200, &json!({"faults": self.faults}))
                    }
                    Err(e) => bad(format!("invalid fault: {e}")),
                }
            }
            ("DELETE", "/_emulator/faults") => {
                self.faults.clear();
                Response::json(200, &json!({"faults": []}))
            }
            (m, "/_emulator/dns") => self.dns(m, &body),
            ("GET", "/_emulator/exposure") => {
                Response::json(200, &crate::exposure::exposure(&self.state, now))
            }
            ("GET", "/_emulator/throttle") => Response::json(
                200,
                &serde_json::to_value(self.throttle_sizes).unwrap_or_default(),
            ),
            ("PUT", "/_emulator/throttle") => match serde_json::from_value::<Throttle>(body) {
                Ok(t) => {
                    self.throttle_sizes = t;
                    self.throttler.reset();
                    Response::json(200, &serde_json::to_value(t).unwrap_or_default())
                }
                Err(e) => bad(format!("invalid throttle: {e}")),
            },
            ("DELETE", "/_emulator/throttle") => {
                self.throttle_sizes = self.cfg.throttle;
                self.throttler.reset();
                Response::json(
                    200,
                    &serde_json::to_value(self.throttle_sizes).unwrap_or_default(),
                )
            }
            ("POST", "/_emulator/tokens") => {
                let tenant = body["tenant"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| self.cfg.tenants.first().map(|t| t.id.clone()))
                    .unwrap_or_default();
                let client_id = body["clientId"]
                    .as_str()
                    .unwrap_or(crate::config::DEV_CLIENT_ID)
                    .to_string();
                let Some(client) = self.cfg.find_client(&tenant, &client_id).cloned() else {
                    return bad(format!("unknown client {client_id} in tenant {tenant}"));
                };
                let aud = body["audience"]
                    .as_str()
                    .unwrap_or("https://management.azure.com")
                    .to_string();
                let exp_in = body["expiresInSeconds"].as_i64().unwrap_or(3599);
                let exp = ((now / 1000) as i64 + exp_in).max(1) as u64;
                let t = self.mint(&tenant, &client.client_id, &client.object_id, &aud, exp);
                Response::json(200, &json!({"access_token": t, "expires_on": exp}))
            }
            ("POST", "/_emulator/role-assignments") => {
                match serde_json::from_value::<crate::config::RoleAssignment>(body) {
                    Ok(ra) => {
                        self.cfg.role_assignments.push(ra);
                        Response::json(200, &json!({"roleAssignments": self.cfg.role_assignments}))
                    }
                    Err(e) => bad(format!("invalid role assignment: {e}")),
                }
            }
            ("GET", "/_emulator/role-assignments") => {
                Response::json(200, &json!({"roleAssignments": self.cfg.role_assignments}))
            }
            ("DELETE", "/_emulator/role-assignments") => {
                let principal = body["principal"].as_str().unwrap_or("").to_string();
                let scope = body["scope"].as_str().unwrap_or("").to_string();
                self.cfg.role_assignments.retain(|r| {
                    !(r.principal.eq_ignore_ascii_case(&principal)
                        && (scope.is_empty() || ids::key(&r.scope) == ids::key(&scope)))
                });
                Response::json(200, &json!({"roleAssignments": self.cfg.role_assignments}))
            }
            ("GET", "/_emulator/operations") => Response::json(
                200,
                &json!({"operations": self.state.operations.values().map(|o| json!({
                "id": o.id, "kind": format!("{:?}", o.kind), "resourceId": o.resource_id, "status": op_status_at(o, now)
            })).collect::<Vec<_>>()}),
            ),
            ("GET", "/_emulator/state") => {
                Response::json(200, &serde_json::to_value(&self.state).unwrap_or_default())
            }
            _ => Response::json(
                404,
                &json!({"error": {"code": "NotFound", "message": format!("no control endpoint {} {}", req.method, req.path)}}),
            ),
        }
    }

    /// `GET /_emulator/requests[?writesOnly=true]`, `DELETE` (or `POST …/reset`) to clear it.
    fn request_log(&mut self, req: &Request, path: &str) -> Option<Response> {
        match (req.method.as_str(), path) {
            ("GET", "/_emulator/requests") => {
                let writes_only = req
                    .query
                    .iter()
                    .any(|(k, v)| k == "writesOnly" && v != "false");
                Some(Response::json(200, &self.requests.to_json(writes_only)))
            }
            ("DELETE", "/_emulator/requests") | ("POST", "/_emulator/requests/reset") => {
                self.requests.clear();
                Some(Response::json(200, &self.requests.to_json(false)))
            }
            _ => None,
        }
    }
}
