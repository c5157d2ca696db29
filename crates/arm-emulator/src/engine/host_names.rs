//! Microsoft.Web custom host names: App Service certificates (`Microsoft.Web/certificates`) and a
//! site's host-name bindings (`Microsoft.Web/sites/hostNameBindings`), with App Service's domain
//! verification against the emulated public DNS (`POST /_emulator/dns`).
//!
//! Sources (Web 2024-11-01, `Certificates.json` and `WebApps.json` in Azure/azure-rest-api-specs):
//! a certificate is a tracked resource (`location` required) whose `pfxBlob` and create-only
//! `password` are never returned, and whose `thumbprint`, `subjectName`, `issuer`, `hostNames`,
//! `expirationDate` are read-only; a binding is a proxy resource named by its host name, with
//! `siteName`, `hostNameType` (`Verified`, `Managed`), `customHostNameDnsRecordType` (`CName`, `A`),
//! `sslState` (`Disabled`, `SniEnabled`, `IpBasedEnabled`) and `thumbprint`.
//! Domain verification: a TXT record `asuid.<host>` holding the site's
//! `customDomainVerificationId` (Learn "Map an existing custom DNS name to Azure App Service").
//! Errors [O: App Service error bodies quoted in public issues]: a missing record is 400
//! `BadRequest` "A TXT record pointing from asuid.{0} to {1} was not found." (extended code 04006,
//! rcl-letsencrypt-auto-ssl/Lets-Encrypt-Auto#25); a certificate that does not cover the host is
//! 409 `Conflict` "The certificate with thumbprint '{0}' does not match the hostname '{1}'."
//! (extended code 04030, Azure/azure-powershell#12843). **[U]** a PFX that does not open, and a
//! thumbprint no certificate has: the emulator answers 400 `BadRequest` with its own wording.

use base64::Engine as _;
use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use super::{Engine, R, Response};
use crate::enrich::render;
use crate::error::ArmError;
use crate::ids::{self, ArmPath};
use crate::validate::{WEB_SITE, props};

pub(super) const WEB_CERTIFICATE: &str = "Microsoft.Web/certificates";
pub(super) const WEB_HOST_NAME_BINDING: &str = "Microsoft.Web/sites/hostNameBindings";

/// The SHA-1 thumbprint of a DER certificate, upper-case hex, as App Service shows it.
fn thumbprint(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

/// Whether the DER certificate is valid for `host` (its SANs; wildcards as TLS matches them).
pub fn covers(der: &[u8], host: &str) -> bool {
    let cert = CertificateDer::from(der.to_vec());
    let Ok(ee) = webpki::EndEntityCert::try_from(&cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(host.to_owned()) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

fn bad(message: impl Into<String>) -> ArmError {
    ArmError::bad_request("BadRequest", message)
}

impl Engine {
    pub(super) fn put_certificate(&mut self, p: &ArmPath, mut body: Value) -> R<Response> {
        Self::require_location(&body)?;
        let pp = props(&body).clone();
        let leaf = if let Some(pfx) = pp["pfxBlob"].as_str() {
            let der = base64::engine::general_purpose::STANDARD
                .decode(pfx)
                .map_err(|_| bad("[emulator] properties.pfxBlob is not base64."))?;
            let password = pp["password"].as_str().unwrap_or("");
            let store = KeyStore::from_pkcs12(&der, password, Pkcs12ImportPolicy::Relaxed)
                .map_err(|_| {
                    bad("[emulator] The certificate could not be opened with the password given.")
                })?;
            let (_, chain) = store
                .private_key_chain()
                .ok_or_else(|| bad("[emulator] The PFX holds no private key."))?;
            let first = chain
                .certs()
                .first()
                .ok_or_else(|| bad("[emulator] The PFX holds no certificate."))?;
            (first.as_der().to_vec(), first.subject().to_string())
        } else if pp["keyVaultId"].is_string() && pp["keyVaultSecretName"].is_string() {
            // Key Vault certificates are not emulated: no vault to read from.
            return Err(bad(
                "[emulator] Key Vault App Service certificates are not emulated.",
            ));
        } else {
            return Err(bad(
                "[emulator] properties.pfxBlob with password, or keyVaultId with keyVaultSecretName, is required.",
            ));
        };
        let (der, subject) = leaf;
        let id = p.id();
        self.refuse_replacing_a_bound_certificate(p, &id, &thumbprint(&der))?;
        let o = body["properties"].as_object_mut().expect("checked object");
        o.insert("thumbprint".into(), json!(thumbprint(&der)));
        o.insert("subjectName".into(), json!(subject));
        o.insert(
            "cerBlob".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(&der)),
        );
        // The Web RP answers 200 to PUT, never 201.
        self.upsert(&id, WEB_CERTIFICATE, body);
        let r = self.state.get(&id).expect("stored");
        Ok(Response::json(200, &render(&self.state, r)))
    }

    pub(super) fn put_host_name_binding(&mut self, p: &ArmPath, mut body: Value) -> R<Response> {
        if !body["properties"].is_object() {
            body["properties"] = json!({});
        }
        let id = p.id();
        let site_id = ids::parent(&id);
        let host = p.name().to_ascii_lowercase();
        let Some(site) = self.state.get(&site_id).cloned() else {
            return Err(ArmError::not_found(
                WEB_SITE,
                &p.names[0],
                p.resource_group.as_deref().unwrap_or(""),
            ));
        };
        let verification = render(&self.state, &site)["properties"]["customDomainVerificationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let verified = self
            .state
            .dns_txt
            .get(&format!("asuid.{host}"))
            .is_some_and(|v| v.iter().any(|x| x == &verification));
        if !verified {
            return Err(bad(format!(
                "A TXT record pointing from asuid.{host} to {verification} was not found."
            )));
        }
        let pp = props(&body).clone();
        let ssl = pp["sslState"].as_str().unwrap_or("Disabled");
        if !ssl.eq_ignore_ascii_case("Disabled") {
            let thumb = pp["thumbprint"].as_str().unwrap_or_default();
            let group = format!(
                "/subscriptions/{}/resourceGroups/{}/",
                p.subscription,
                p.resource_group.as_deref().unwrap_or("")
            );
            let cert = self.state.of_type(WEB_CERTIFICATE).find(|c| {
                ids::key(&c.id).starts_with(&ids::key(&group))
                    && props(&c.body)["thumbprint"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(thumb))
            });
            let Some(cert) = cert else {
                return Err(bad(format!(
                    "[emulator] No certificate with thumbprint '{thumb}' in the site's resource group."
                )));
            };
            let der = props(&cert.body)["cerBlob"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default();
            if !covers(&der, &host) {
                return Err(ArmError::new(
                    409,
                    "Conflict",
                    format!(
                        "The certificate with thumbprint '{thumb}' does not match the hostname '{host}'."
                    ),
                ));
            }
        }
        let mut stored = body.clone();
        let o = stored["properties"]
            .as_object_mut()
            .expect("checked object");
        o.insert("siteName".into(), json!(p.names[0]));
        o.entry("hostNameType").or_insert(json!("Verified"));
        o.entry("azureResourceType").or_insert(json!("Website"));
        o.entry("customHostNameDnsRecordType")
            .or_insert(json!("CName"));
        o.entry("sslState").or_insert(json!("Disabled"));
        self.upsert(&id, WEB_HOST_NAME_BINDING, stored);
        let r = self.state.get(&id).expect("stored");
        Ok(Response::json(200, &render(&self.state, r)))
    }

    /// The host name of a binding in the certificate's resource group that uses `thumb`.
    fn binding_using(&self, p: &ArmPath, thumb: &str) -> Option<String> {
        let group = ids::key(&format!(
            "/subscriptions/{}/resourceGroups/{}/",
            p.subscription,
            p.resource_group.as_deref().unwrap_or("")
        ));
        self.state
            .of_type(WEB_HOST_NAME_BINDING)
            .find(|b| {
                ids::key(&b.id).starts_with(&group)
                    && props(&b.body)["thumbprint"]
                        .as_str()
                        .is_some_and(|t| !t.is_empty() && t.eq_ignore_ascii_case(thumb))
            })
            .map(|b| b.id.rsplit('/').next().unwrap_or_default().to_owned())
    }

    /// Replacing the PFX of a certificate a binding uses (another thumbprint) is refused with the
    /// delete's 409: "Cannot remove certificate with thumbprint {0} because it is used for
    /// hostname {1}." [O: ffMathy/FluffySpoon.AspNet.EncryptWeMust#73, the activity log of a
    /// `Certificates` update of a bound certificate; the way round is a new certificate, the
    /// binding moved to it, the old one deleted, as Learn "Add and manage TLS/SSL certificates in
    /// Azure App Service", "Renew uploaded certificate", orders it]. **[U]** the report's call was
    /// the SDK's update; that a PUT (`Certificates_CreateOrUpdate`) is refused alike, and that a
    /// PUT of the same certificate (same thumbprint) is accepted, are the emulator's reading.
    fn refuse_replacing_a_bound_certificate(&self, p: &ArmPath, id: &str, new: &str) -> R<()> {
        let Some(old) = self
            .state
            .get(id)
            .and_then(|c| props(&c.body)["thumbprint"].as_str().map(str::to_owned))
        else {
            return Ok(());
        };
        if old.eq_ignore_ascii_case(new) {
            return Ok(());
        }
        match self.binding_using(p, &old) {
            Some(host) => Err(ArmError::new(
                409,
                "Conflict",
                format!(
                    "Cannot remove certificate with thumbprint {old} because it is used for hostname {host}."
                ),
            )),
            None => Ok(()),
        }
    }

    /// A certificate a host-name binding uses cannot be deleted: 409 `Conflict` "Cannot remove
    /// certificate with thumbprint {0} because it is used for hostname {1}." [O: the App Service
    /// answer to `Certificates_Delete` quoted in MarcStan/lets-encrypt-azure#7; the 409 on delete
    /// in hashicorp/terraform-provider-azurerm#13059 and #15595]. Bindings are looked for in the
    /// certificate's resource group, where a binding can use it (Learn "Add and manage TLS/SSL
    /// certificates in Azure App Service": same resource group and region) **[U]** whether Azure
    /// looks wider.
    pub(super) fn delete_certificate(&mut self, p: &ArmPath) -> R<Response> {
        let id = p.id();
        let thumb = self
            .state
            .get(&id)
            .and_then(|c| props(&c.body)["thumbprint"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if let Some(host) = self.binding_using(p, &thumb) {
            return Err(ArmError::new(
                409,
                "Conflict",
                format!(
                    "Cannot remove certificate with thumbprint {thumb} because it is used for hostname {host}."
                ),
            ));
        }
        self.state.resources.remove(&ids::key(&id));
        Ok(Response::empty(200))
    }

    /// `POST /_emulator/dns` `{"name","type":"TXT","value"}` adds a record; `GET` lists them;
    /// `DELETE` empties the zone.
    pub(crate) fn dns(&mut self, method: &str, body: &Value) -> Response {
        match method {
            "POST" => {
                let (Some(name), Some(value)) = (body["name"].as_str(), body["value"].as_str())
                else {
                    return Response::json(
                        400,
                        &json!({"error": {"code": "BadRequest", "message": "name and value are required"}}),
                    );
                };
                if !body["type"]
                    .as_str()
                    .unwrap_or("TXT")
                    .eq_ignore_ascii_case("TXT")
                {
                    return Response::json(
                        400,
                        &json!({"error": {"code": "BadRequest", "message": "only TXT records are emulated"}}),
                    );
                }
                let list = self
                    .state
                    .dns_txt
                    .entry(name.trim_end_matches('.').to_ascii_lowercase())
                    .or_default();
                if !list.iter().any(|v| v == value) {
                    list.push(value.to_owned());
                }
                self.persist();
                Response::json(200, &json!({"txt": self.state.dns_txt}))
            }
            "DELETE" => {
                self.state.dns_txt.clear();
                self.persist();
                Response::json(200, &json!({"txt": {}}))
            }
            _ => Response::json(200, &json!({"txt": self.state.dns_txt})),
        }
    }
}
