//! Managed-identity token endpoints: what a process on an Azure host asks for a token of the
//! host's identity, without a secret. Two protocols, one identity list (`managedIdentity` in the
//! config):
//!
//! * App Service's (and Azure Functions'), the one `azure_identity` 1.0 uses when
//!   `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set (`app_service_managed_identity_credential.rs`
//!   and `imds_managed_identity_credential.rs` in azure_identity 1.0.0): `GET {IDENTITY_ENDPOINT}
//!   ?api-version=2019-08-01&resource=<audience>[&client_id=…]` with the header
//!   `X-IDENTITY-HEADER: {IDENTITY_HEADER}`; the answer `{access_token, expires_on (a string of
//!   Unix seconds), resource, token_type, client_id}` (Learn "Use managed identities for App
//!   Service and Azure Functions", REST endpoint reference). Served at `/msi/token`.
//! * A virtual machine's IMDS: `GET /metadata/identity/oauth2/token?api-version=2018-02-01
//!   &resource=…[&client_id=…|&object_id=…|&msi_res_id=…]` with `Metadata: true`; the answer
//!   adds `expires_in`, `not_before` and `refresh_token` (Learn "How to use managed identities for
//!   Azure resources on an Azure VM to acquire an access token"). azure_identity 1.0 always calls
//!   `http://169.254.169.254` for it, so only other clients (curl, the Python SDK with
//!   `AZURE_POD_IDENTITY_AUTHORITY_HOST`) reach this one.
//!
//! Errors: a missing `Metadata` header is 400 `invalid_request` "Required metadata header not
//! specified"; an identity the host does not have 400 `invalid_request` "Identity not found"
//! (the VM page's error table [C]). For App Service a wrong or missing `X-IDENTITY-HEADER` is
//! answered the same way here **[U]**: its status and body are not documented.

use serde_json::{Value, json};

use crate::config::{Client, Config};
use crate::engine::{Engine, Request, Response};
use crate::util::form_get;

/// Which of the two protocols a request speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    AppService,
    Imds,
}

impl Protocol {
    /// The protocol of a path, if it is one of the two endpoints.
    pub fn of(path_lower: &str) -> Option<Protocol> {
        match path_lower.trim_end_matches('/') {
            "/msi/token" => Some(Protocol::AppService),
            "/metadata/identity/oauth2/token" => Some(Protocol::Imds),
            _ => None,
        }
    }
}

fn bad(description: &str) -> Response {
    Response::json(
        400,
        &json!({"error": "invalid_request", "error_description": description}),
    )
}

/// The identity a request is for, its tenant and the token's audience; or the error answer.
pub fn choose<'a>(
    cfg: &'a Config,
    protocol: Protocol,
    req: &Request,
) -> Result<(&'a str, &'a Client, String), Response> {
    let mi = &cfg.managed_identity;
    match protocol {
        Protocol::Imds if req.header("Metadata") != Some("true") => {
            return Err(bad("Required metadata header not specified"));
        }
        Protocol::AppService if req.header("X-IDENTITY-HEADER") != Some(mi.header.as_str()) => {
            return Err(bad("[emulator] X-IDENTITY-HEADER is missing or wrong"));
        }
        _ => {}
    }
    if form_get(&req.query, "api-version").is_none() {
        return Err(bad("Required query variable 'api-version' is missing"));
    }
    let Some(resource) = form_get(&req.query, "resource").filter(|r| !r.is_empty()) else {
        return Err(bad("Required query variable 'resource' is missing"));
    };
    // A user-assigned identity by its client id, or its object id; else the system-assigned.
    let named = form_get(&req.query, "client_id").or_else(|| form_get(&req.query, "object_id"));
    let id = match (named, &mi.system_assigned) {
        (Some(id), _) => id.to_owned(),
        (None, Some(s)) => s.clone(),
        (None, None) => return Err(bad("Identity not found")),
    };
    let assigned = |c: &Client| {
        let mine = |x: &String| x.eq_ignore_ascii_case(&c.client_id);
        mi.system_assigned.iter().any(mine) || mi.user_assigned.iter().any(mine)
    };
    for t in &cfg.tenants {
        if let Some(c) = t.clients.iter().find(|c| {
            (c.client_id.eq_ignore_ascii_case(&id) || c.object_id.eq_ignore_ascii_case(&id))
                && assigned(c)
        }) {
            return Ok((t.id.as_str(), c, resource.to_owned()));
        }
    }
    Err(bad("Identity not found"))
}

impl Engine {
    pub(crate) fn managed_identity(
        &self,
        protocol: Protocol,
        req: &Request,
        now_ms: u64,
    ) -> Response {
        let (tenant, client, resource) = match choose(&self.cfg, protocol, req) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let lifetime = self.cfg.token_lifetime_seconds;
        let now = now_ms / 1000;
        let exp = now + lifetime;
        let token = self.mint(tenant, &client.client_id, &client.object_id, &resource, exp);
        let mut body: Value = json!({
            "access_token": token,
            "expires_on": exp.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client.client_id,
        });
        if protocol == Protocol::Imds {
            body["expires_in"] = json!(lifetime.to_string());
            body["not_before"] = json!(now.to_string());
            body["refresh_token"] = json!("");
        }
        Response::json(200, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEV_CLIENT_ID, DEV_CLIENT_OBJECT_ID, DEV_TENANT, PORTAL_CLIENT_ID};

    fn cfg() -> Config {
        let mut c = Config::dev();
        c.managed_identity.system_assigned = Some(DEV_CLIENT_ID.into());
        c.managed_identity.user_assigned = vec![PORTAL_CLIENT_ID.into()];
        c
    }

    fn req(path: &str, headers: &[(&str, &str)]) -> Request {
        headers
            .iter()
            .fold(Request::new("GET", path), |r, (k, v)| r.with_header(k, v))
    }

    #[test]
    fn a_token_is_for_an_identity_the_host_has_and_only_with_the_protocols_header() {
        let c = cfg();
        let app = "/msi/token?api-version=2019-08-01&resource=https://management.azure.com";
        let imds = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com";
        let header = ("X-IDENTITY-HEADER", "fhirlock-dev-identity-header");
        let ok = |p, path: &str, h: &[(&str, &str)]| {
            choose(&c, p, &req(path, h))
                .map(|(t, cl, r)| (t.to_owned(), cl.client_id.clone(), r))
                .map_err(|e| e.status)
        };
        let system = Ok((
            DEV_TENANT.to_owned(),
            DEV_CLIENT_ID.to_owned(),
            "https://management.azure.com".to_owned(),
        ));
        assert_eq!(ok(Protocol::AppService, app, &[header]), system);
        assert_eq!(ok(Protocol::Imds, imds, &[("Metadata", "true")]), system);
        // A user-assigned identity by client or object id.
        let user = ok(
            Protocol::AppService,
            &format!("{app}&client_id={PORTAL_CLIENT_ID}"),
            &[header],
        );
        assert_eq!(user.unwrap().1, PORTAL_CLIENT_ID);
        let by_object = ok(
            Protocol::Imds,
            &format!("{imds}&object_id={DEV_CLIENT_OBJECT_ID}"),
            &[("Metadata", "true")],
        );
        assert_eq!(by_object.unwrap().1, DEV_CLIENT_ID);
        // The outsider is a client of the tenant, but not an identity of this host.
        let outsider = "6f1c2a52-0000-4000-8000-00000000c003";
        for (p, path, h) in [
            (
                Protocol::AppService,
                format!("{app}&client_id={outsider}"),
                vec![header],
            ),
            (Protocol::AppService, app.to_owned(), vec![]),
            (
                Protocol::AppService,
                app.to_owned(),
                vec![("X-IDENTITY-HEADER", "guess")],
            ),
            (Protocol::Imds, imds.to_owned(), vec![]),
            (
                Protocol::Imds,
                imds.replace("&resource=https://management.azure.com", ""),
                vec![("Metadata", "true")],
            ),
        ] {
            assert_eq!(ok(p, &path, &h), Err(400), "{path} {h:?}");
        }
        // No system-assigned identity: only a named one answers.
        let mut none = cfg();
        none.managed_identity.system_assigned = None;
        assert!(choose(&none, Protocol::AppService, &req(app, &[header])).is_err());
        assert_eq!(Protocol::of("/msi/token/"), Some(Protocol::AppService));
        assert_eq!(
            Protocol::of("/metadata/identity/oauth2/token"),
            Some(Protocol::Imds)
        );
        assert_eq!(Protocol::of("/msi/other"), None);
    }
}
