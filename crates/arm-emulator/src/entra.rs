//! The Microsoft Entra side: OpenID configuration, keys, instance discovery, and the token
//! endpoint (client credentials with a secret or a federated client assertion).

use serde_json::{Value, json};

use crate::engine::{Engine, Outcome, Request, Response, utc_words};
use crate::jwt;
use crate::util::{self, form_get, now_ms, rfc3339, uuid4};

impl Engine {
    pub(crate) fn entra(&mut self, req: &Request, now: u64) -> Outcome {
        let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let tenant = segs.first().copied().unwrap_or("");
        let rest = segs
            .get(1..)
            .map(|s| s.join("/"))
            .unwrap_or_default()
            .to_ascii_lowercase();
        let resp = match (req.method.as_str(), rest.as_str()) {
            ("GET", "v2.0/.well-known/openid-configuration")
            | ("GET", ".well-known/openid-configuration") => self.openid_config(tenant),
            ("GET", "discovery/v2.0/keys") | ("GET", "discovery/keys") => {
                Response::json(200, &json!({"keys": [self.key.jwk()]}))
            }
            ("GET", "discovery/instance") => {
                let host = self.base_url.trim_start_matches("https://").to_string();
                let t = util::form_get(&req.query, "authorization_endpoint")
                    .and_then(|a| a.split('/').nth(3).map(str::to_string))
                    .unwrap_or_else(|| "common".into());
                Response::json(
                    200,
                    &json!({
                        "tenant_discovery_endpoint": format!("{}/{t}/v2.0/.well-known/openid-configuration", self.base_url),
                        "api-version": "1.1",
                        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}]
                    }),
                )
            }
            ("POST", "oauth2/v2.0/token") | ("POST", "oauth2/token") => {
                return self.token(req, tenant, now);
            }
            _ => Response::json(
                404,
                &json!({"error": {"code": "NotFound", "message": format!("No route for {} {}", req.method, req.path)}}),
            ),
        };
        Outcome::Respond(resp)
    }

    fn openid_config(&self, tenant: &str) -> Response {
        if !self
            .cfg
            .tenants
            .iter()
            .any(|t| t.id.eq_ignore_ascii_case(tenant))
            && tenant != "common"
            && tenant != "organizations"
        {
            return entra_error(
                400,
                "invalid_tenant",
                90002,
                &format!("Tenant '{tenant}' not found."),
            );
        }
        let b = &self.base_url;
        Response::json(
            200,
            &json!({
                "issuer": format!("{b}/{tenant}/v2.0"),
                "token_endpoint": format!("{b}/{tenant}/oauth2/v2.0/token"),
                "authorization_endpoint": format!("{b}/{tenant}/oauth2/v2.0/authorize"),
                "device_authorization_endpoint": format!("{b}/{tenant}/oauth2/v2.0/devicecode"),
                "end_session_endpoint": format!("{b}/{tenant}/oauth2/v2.0/logout"),
                "jwks_uri": format!("{b}/{tenant}/discovery/v2.0/keys"),
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            }),
        )
    }

    fn token(&mut self, req: &Request, tenant: &str, now: u64) -> Outcome {
        match self.token_inner(req, tenant, now) {
            Ok(r) => Outcome::Respond(r),
            Err(TokenErr::Resp(r)) => Outcome::Respond(r),
            Err(TokenErr::NeedJwks(url, ca, bearer)) => Outcome::NeedJwks {
                url,
                ca_file: ca,
                bearer_file: bearer,
            },
        }
    }

    fn token_inner(&mut self, req: &Request, tenant: &str, now: u64) -> Result<Response, TokenErr> {
        let form = util::parse_form(&String::from_utf8_lossy(&req.body));
        let get = |k: &str| form_get(&form, k).map(str::to_string);
        if !self
            .cfg
            .tenants
            .iter()
            .any(|t| t.id.eq_ignore_ascii_case(tenant))
        {
            return Err(TokenErr::Resp(entra_error(
                400,
                "invalid_request",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
            )));
        }
        if get("grant_type").as_deref() != Some("client_credentials") {
            return Err(TokenErr::Resp(entra_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type; only client_credentials is emulated.",
            )));
        }
        let client_id = get("client_id").unwrap_or_default();
        let Some(client) = self.cfg.find_client(tenant, &client_id).cloned() else {
            return Err(TokenErr::Resp(entra_error(
                400,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
                ),
            )));
        };
        let scope = get("scope").unwrap_or_default();
        let resource = client_credentials_resource(&scope).map_err(TokenErr::Resp)?;
        if let Some(secret) = get("client_secret") {
            if !client.secrets.iter().any(|s| s == &secret) {
                return Err(TokenErr::Resp(entra_error(
                    401,
                    "invalid_client",
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                )));
            }
        } else if let Some(assertion) = get("client_assertion") {
            if get("client_assertion_type").as_deref()
                != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            {
                return Err(TokenErr::Resp(entra_error(
                    400,
                    "invalid_request",
                    700025,
                    "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
                )));
            }
            self.verify_assertion(&client, &assertion, now)?;
        } else {
            return Err(TokenErr::Resp(entra_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )));
        }
        let lifetime = self.cfg.token_lifetime_seconds;
        let token = self.mint(
            tenant,
            &client.client_id,
            &client.object_id,
            resource,
            now / 1000 + lifetime,
        );
        Ok(Response::json(
            200,
            &json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}),
        ))
    }

    /// Signs an access token like Entra's (v1 claims, as ARM tokens are).
    pub fn mint(
        &self,
        tenant: &str,
        client_id: &str,
        object_id: &str,
        audience: &str,
        exp_secs: u64,
    ) -> String {
        let now = now_ms() / 1000;
        self.key.sign(&json!({
            "aud": audience,
            "iss": format!("{}/{tenant}/", self.base_url),
            "iat": now.min(exp_secs), "nbf": now.min(exp_secs), "exp": exp_secs,
            "appid": client_id, "azp": client_id, "oid": object_id, "sub": object_id, "tid": tenant,
            "idtyp": "app", "ver": "1.0", "uti": uuid4(),
        }))
    }

    fn verify_assertion(
        &mut self,
        client: &crate::config::Client,
        assertion: &str,
        now: u64,
    ) -> Result<(), TokenErr> {
        let invalid =
            |code: u32, msg: &str| TokenErr::Resp(entra_error(400, "invalid_client", code, msg));
        let d = jwt::decode(assertion)
            .map_err(|_| invalid(50027, "JWT token is invalid or malformed."))?;
        let iss = d.claims["iss"].as_str().unwrap_or("").to_string();
        let sub = d.claims["sub"].as_str().unwrap_or("").to_string();
        let auds: Vec<String> = match &d.claims["aud"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        };
        let Some(fc) = client
            .federated_credentials
            .iter()
            .find(|fc| {
                fc.issuer.trim_end_matches('/') == iss.trim_end_matches('/')
                    && fc.subject == sub
                    && fc.audiences.iter().any(|a| auds.contains(a))
            })
            .cloned()
        else {
            return Err(invalid(
                70021,
                &format!(
                    "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'.",
                    auds.join(",")
                ),
            ));
        };
        let exp = d.claims["exp"].as_u64().unwrap_or(0);
        let nbf = d.claims["nbf"]
            .as_u64()
            .or(d.claims["iat"].as_u64())
            .unwrap_or(0);
        let now_s = now / 1000;
        // Entra allows a few minutes of clock skew.
        if exp + 300 < now_s || nbf > now_s + 300 {
            return Err(invalid(
                700024,
                &format!(
                    "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}.",
                    utc_words(now),
                    utc_words(nbf * 1000),
                    utc_words(exp * 1000)
                ),
            ));
        }
        let jwks = match &fc.jwks_file {
            Some(path) => std::fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .ok_or_else(|| {
                    invalid(
                        50027,
                        &format!("[emulator] cannot read the issuer's JWKS file {path}."),
                    )
                })?,
            None => {
                let url = fc.jwks_url.clone().unwrap_or_else(|| {
                    format!("{}/openid/v1/jwks", fc.issuer.trim_end_matches('/'))
                });
                match self.jwks_cache.get(&url) {
                    Some(v) => v.clone(),
                    None => {
                        return Err(TokenErr::NeedJwks(
                            url,
                            fc.ca_file.clone(),
                            fc.jwks_bearer_token_file.clone(),
                        ));
                    }
                }
            }
        };
        match d.verify(&jwks) {
            Ok(()) => Ok(()),
            Err(jwt::JwtError::UnknownKey(_)) if fc.jwks_file.is_none() => {
                // Keys may have rotated: refetch once.
                let url = fc.jwks_url.clone().unwrap_or_else(|| {
                    format!("{}/openid/v1/jwks", fc.issuer.trim_end_matches('/'))
                });
                if self.jwks_cache.remove(&url).is_some() {
                    return Err(TokenErr::NeedJwks(
                        url,
                        fc.ca_file.clone(),
                        fc.jwks_bearer_token_file.clone(),
                    ));
                }
                Err(invalid(
                    700027,
                    "Client assertion contains an invalid signature. [Reason - The key was not found.]",
                ))
            }
            Err(e) => Err(invalid(
                700027,
                &format!("Client assertion contains an invalid signature. [Reason - {e}.]"),
            )),
        }
    }
}

/// The OpenID Connect scopes, which Entra accepts beside a resource scope ("Scopes and permissions
/// in the Microsoft identity platform", OpenID Connect scopes). MSAL for Go adds `openid
/// offline_access profile` to every token request, the client-credentials grant included
/// (`AppendDefaultScopes`), and so do the Azure SDK for Go and Azure Service Operator on top of it.
const OIDC_SCOPES: [&str; 4] = ["openid", "offline_access", "profile", "email"];

/// The resource a client-credentials `scope` asks for: exactly one `<resource>/.default`, beside
/// any OpenID Connect scopes (the client-credentials flow doc: "the resource identifier
/// suffixed with .default"). Entra's refusals: no resource scope, or one that is not `.default`,
/// is AADSTS1002012 (its text as MSAL Go quotes it); two resources is AADSTS70011 (as
/// Azure/azure-sdk-for-net#9076 shows it for two `.default` scopes); an empty scope is 70011 [U].
fn client_credentials_resource(scope: &str) -> Result<&str, Response> {
    let words: Vec<&str> = scope.split(' ').filter(|w| !w.is_empty()).collect();
    let resources: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(w)))
        .collect();
    if let [one] = resources.as_slice()
        && let Some(r) = one.strip_suffix("/.default").filter(|r| !r.is_empty())
    {
        return Ok(r);
    }
    let (code, msg) = if words.is_empty() || resources.len() > 1 {
        (
            70011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        )
    } else {
        (
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )
    };
    Err(entra_error(400, "invalid_scope", code, &msg))
}

enum TokenErr {
    Resp(Response),
    NeedJwks(String, Option<String>, Option<String>),
}

fn entra_error(status: u16, error: &str, code: u32, msg: &str) -> Response {
    let trace = uuid4();
    let corr = uuid4();
    let ts = rfc3339(now_ms());
    Response::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {msg} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}"),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARM: &str = "https://management.azure.com/.default";

    #[test]
    fn client_credentials_scope_table() {
        // (scope as sent, Ok(resource) or Err(AADSTS code))
        let cases: [(&str, Result<&str, u32>); 16] = [
            (ARM, Ok("https://management.azure.com")),
            // As MSAL for Go (the Azure SDK for Go's azidentity) sends it.
            (
                "https://management.azure.com/.default openid offline_access profile",
                Ok("https://management.azure.com"),
            ),
            (
                "openid https://management.azure.com/.default email",
                Ok("https://management.azure.com"),
            ),
            (
                "https://management.azure.com//.default",
                Ok("https://management.azure.com/"),
            ),
            (
                "https://management.azure.com/.default  OpenID profile",
                Ok("https://management.azure.com"),
            ),
            ("api://fhirlock/.default profile", Ok("api://fhirlock")),
            // No resource scope.
            ("", Err(70011)),
            ("   ", Err(70011)),
            ("openid offline_access profile", Err(1002012)),
            ("email", Err(1002012)),
            // A resource scope that is not `.default`.
            (
                "https://management.azure.com/user_impersonation",
                Err(1002012),
            ),
            (
                "https://management.azure.com/user_impersonation openid",
                Err(1002012),
            ),
            ("/.default", Err(1002012)),
            // Two resource scopes, with or without the OpenID ones.
            (
                "https://management.azure.com/.default https://storage.azure.com/.default",
                Err(70011),
            ),
            (
                "https://management.azure.com/.default https://graph.microsoft.com/.default openid profile",
                Err(70011),
            ),
            (
                "https://management.azure.com/.default https://management.azure.com/user_impersonation",
                Err(70011),
            ),
        ];
        for (scope, want) in cases {
            let got = client_credentials_resource(scope).map_err(|r| {
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(r.status, 400, "{scope}");
                assert_eq!(v["error"], "invalid_scope", "{scope}");
                assert!(
                    v["error_description"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("AADSTS{}: ", v["error_codes"][0])),
                    "{scope}: {v}"
                );
                v["error_codes"][0].as_u64().unwrap() as u32
            });
            assert_eq!(got, want, "scope {scope:?}");
        }
    }
}
