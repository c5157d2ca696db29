//! `spec.appService.hostHeader: Preserve`: the App Service serves the FHIR host name itself, so
//! the gateway can pass the client's Host header through and the FHIR server's absolute URLs
//! (Bundle.link, fullUrl, Location) name the host clients reach. Microsoft's guidance: Azure
//! Architecture Center "Preserve the original HTTP host name between a reverse proxy and its
//! back-end web application"; Learn "Configure App Service with Application Gateway" (custom
//! domain: the same domain on the gateway and the App Service, "Override with new host name: No",
//! a custom probe with the custom domain as its host).
//!
//! Order (each waits for the one before, so the app never gets a Host it does not serve):
//! 1. `SiteCertificate`: the PFX from the TLS Secret as a `Microsoft.Web/certificates` resource
//!    beside the site (Web 2024-11-01 `Certificates.json`: `pfxBlob`, `password`, `serverFarmId`;
//!    Azure returns its `thumbprint`).
//! 2. `SiteHostNameBinding`: `sites/{site}/hostNameBindings/{host}` with `sslState: SniEnabled`
//!    and that thumbprint. Azure refuses it (400, "A TXT record pointing from asuid.{host} to
//!    {customDomainVerificationId} was not found.") until the domain-verification record exists;
//!    status says which record to ask for.
//! 3. Renewal (a new Secret): a new certificate resource (its name carries the Secret's
//!    fingerprint), the binding moved to its thumbprint, then the certificate before deleted once
//!    no binding uses it. Azure refuses to replace a bound certificate ([O]
//!    ffMathy/FluffySpoon.AspNet.EncryptWeMust#73, 409 "Cannot remove certificate with thumbprint
//!    {0} because it is used for hostname {1}."), and Learn "Add and manage TLS/SSL certificates
//!    in Azure App Service", "Renew uploaded certificate", gives this order: upload the new
//!    certificate, update the binding to it, delete the existing certificate.
//! 4. The gateway's backend settings stop overriding the host (`pickHostNameFromBackendAddress:
//!    false`, no `hostName`) and its probe names the host (`gateway.rs`), only once the binding is
//!    in place with the certificate's thumbprint.

use serde_json::{Value, json};

use super::{Method, Step, StepKind, step, waiting};
use crate::desired::{Certificate, Desired};
use crate::json::FieldChange;
use crate::observed::{Observed, api_version};

/// The thumbprint Azure computed for the certificate fhirlock uploaded, when it exists.
pub fn certificate_thumbprint(o: &Observed) -> Option<String> {
    o.site_certificate
        .as_ref()?
        .pointer("/properties/thumbprint")?
        .as_str()
        .map(str::to_owned)
}

/// Whether the site has the host name bound with SNI and the certificate fhirlock uploaded.
pub fn binding_in_place(o: &Observed) -> bool {
    let Some(b) = o.host_name_binding.as_ref() else {
        return false;
    };
    let sni = b
        .pointer("/properties/sslState")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("SniEnabled"));
    let thumb = b.pointer("/properties/thumbprint").and_then(Value::as_str);
    sni && thumb.is_some()
        && certificate_thumbprint(o)
            .is_some_and(|t| thumb.is_some_and(|x| x.eq_ignore_ascii_case(&t)))
}

/// Whether the gateway passes the client's Host header through: only with Preserve, and only once
/// the App Service serves that host name over TLS. A binding whose thumbprint lags a renewed
/// certificate still serves it, so a renewal does not switch the gateway back and forth.
pub fn passes_host_through(d: &Desired, o: &Observed) -> bool {
    d.preserves_host()
        && o.host_name_binding
            .as_ref()
            .and_then(|b| b.pointer("/properties/sslState"))
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("SniEnabled"))
}

/// The DNS record Azure verifies the host name by: `asuid.<host>`, TXT, the site's
/// `customDomainVerificationId` (Learn "Map an existing custom DNS name to Azure App Service").
/// `None` without Preserve, once the binding exists, or when the site is not read.
pub fn verification_record(d: &Desired, o: &Observed) -> Option<(String, String)> {
    if !d.preserves_host() || o.host_name_binding.is_some() {
        return None;
    }
    let id = o
        .site
        .as_ref()?
        .pointer("/properties/customDomainVerificationId")?
        .as_str()?;
    Some((format!("asuid.{}", d.gateway.host_name), id.to_owned()))
}

/// Uploads the certificate for the host name; a renewed Secret is a new resource
/// ([`Desired::site_certificate_id`]), never a replacement of the bound one.
pub(super) fn site_certificate(d: &Desired, o: &Observed) -> Option<Step> {
    if !d.preserves_host() {
        return None;
    }
    let Certificate::Pfx {
        data_base64,
        password,
        ..
    } = &d.gateway.certificate
    else {
        // Admission allows Preserve with secretRef only; an unresolved Secret (offline plan)
        // cannot be uploaded.
        return None;
    };
    let site = o.site.as_ref()?;
    let marker = d.gateway.certificate.marker()?;
    let seen = o
        .site_certificate
        .as_ref()
        .and_then(|c| c.pointer(&format!("/tags/{}", crate::TLS_TAG)))
        .and_then(Value::as_str);
    if seen == Some(marker.as_str()) {
        return None;
    }
    let body = json!({
        "location": site.get("location").cloned().unwrap_or(Value::Null),
        "tags": {crate::OWNER_TAG: d.owner, crate::TLS_TAG: marker},
        "properties": {
            "pfxBlob": data_base64,
            "password": password,
            "serverFarmId": site.pointer("/properties/serverFarmId").cloned().unwrap_or(Value::Null),
        },
    });
    let creates = o.site_certificate.is_none();
    let change = FieldChange {
        path: if creates {
            "(resource)".into()
        } else {
            format!("tags.{}", crate::TLS_TAG)
        },
        from: seen.map(|s| json!(s)),
        to: Some(json!(marker)),
    };
    let mut s = step(
        StepKind::SiteCertificate,
        &d.site_certificate_id(),
        Method::Put,
        api_version::WEB,
        body,
        vec![change],
        "the App Service needs the certificate for the FHIR host name to serve it itself",
    );
    s.creates = creates;
    Some(s)
}

/// Binds the host name to the site with SNI and the uploaded certificate.
pub(super) fn host_name_binding(d: &Desired, o: &Observed) -> Option<Step> {
    if !d.preserves_host() || o.site.is_none() || binding_in_place(o) {
        return None;
    }
    let thumbprint = certificate_thumbprint(o);
    let body = json!({"properties": {
        "siteName": d.site_name(),
        "hostNameType": "Verified",
        "customHostNameDnsRecordType": "A",
        "sslState": "SniEnabled",
        "thumbprint": thumbprint.clone().unwrap_or_default(),
    }});
    let seen = |f: &str| {
        o.host_name_binding
            .as_ref()
            .and_then(|b| b.pointer(&format!("/properties/{f}")))
            .cloned()
    };
    let changes = ["sslState", "thumbprint"]
        .iter()
        .map(|f| FieldChange {
            path: format!("properties.{f}"),
            from: seen(f),
            to: body.pointer(&format!("/properties/{f}")).cloned(),
        })
        .filter(|c| c.from != c.to)
        .collect();
    let mut s = step(
        StepKind::SiteHostNameBinding,
        &d.host_name_binding_id(),
        Method::Put,
        api_version::WEB,
        body,
        changes,
        "the App Service must serve the FHIR host name so the gateway can pass it through",
    );
    s.creates = o.host_name_binding.is_none();
    let why = thumbprint.is_none().then(|| {
        format!(
            "the App Service certificate for {} to exist",
            d.gateway.host_name
        )
    });
    Some(waiting(s, why))
}

/// Whether an ARM error is Azure refusing a host-name binding because the domain-verification
/// TXT record is missing (400 `BadRequest`, "A TXT record pointing from asuid.{0} to {1} was not
/// found.", extended code 04006 [O: the App Service error body quoted in
/// rcl-letsencrypt-auto-ssl/Lets-Encrypt-Auto#25]).
pub fn is_verification_failure(message: &str) -> bool {
    message.contains("TXT record pointing from asuid.")
}

/// Teardown (deletionPolicy Delete): the binding fhirlock created (recorded in
/// `status.createdResources` before its PUT: a binding is a proxy resource and carries no tags).
/// It waits while something may still send the host name to the site: the gateway fhirlock is
/// deleting, or, for a gateway that stays, the site's access rule that admits it (`gateway_reaches`).
/// Without the binding App Service no longer routes that host, so the app must be cut off first.
pub(super) fn delete_binding(
    d: &Desired,
    o: &Observed,
    created: &[String],
    gateway_reaches: Option<String>,
) -> Option<Step> {
    let id = d.host_name_binding_id();
    o.host_name_binding.as_ref()?;
    if !created.iter().any(|c| crate::id::same(c, &id)) {
        return None;
    }
    let change = FieldChange {
        path: "(resource)".into(),
        from: Some(json!(d.gateway.host_name)),
        to: None,
    };
    let s = step(
        StepKind::DeleteHostNameBinding,
        &id,
        Method::Delete,
        api_version::WEB,
        Value::Null,
        vec![change],
        "remove the host-name binding fhirlock created",
    );
    Some(waiting(s, gateway_reaches))
}

/// The IDs of this endpoint's earlier certificates that status records
/// ([`Desired::recorded_site_certificates`], or `created` in a teardown): every certificate name
/// of this endpoint but the current one. `observe` reads them into
/// [`Observed::former_site_certificates`].
pub fn former_certificate_ids(d: &Desired, created: &[String]) -> Vec<String> {
    let current = d.site_certificate_id();
    let mut ids: Vec<String> = Vec::new();
    for c in d.recorded_site_certificates.iter().chain(created) {
        let new = !ids.iter().any(|i| crate::id::same(i, c));
        if new && d.is_site_certificate_id(c) && !crate::id::same(c, &current) {
            ids.push(c.clone());
        }
    }
    ids
}

/// The earlier certificates read as absent: dropped from `status.createdResources`, so no later
/// look pays a GET that answers 404.
pub fn gone(o: &Observed) -> Vec<String> {
    o.former_site_certificates
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(id, _)| id.clone())
        .collect()
}

/// Renewal: each earlier certificate fhirlock created (recorded, so read) that still carries this
/// endpoint's owner tag is deleted, waiting while the binding still uses it (the binding moves to
/// the new certificate first, so it never names a certificate that is gone).
pub(super) fn delete_former_certificates(d: &Desired, o: &Observed) -> Vec<Step> {
    o.former_site_certificates
        .iter()
        .filter_map(|(id, c)| {
            let why = format!(
                "the binding of {} to move to the renewed certificate",
                d.gateway.host_name
            );
            delete_one(d, o, id, c.as_ref()?, true, why)
        })
        .collect()
}

/// Teardown: the certificates fhirlock uploaded (the current one and any earlier one), only if
/// recorded as created and still carrying this endpoint's owner tag. Azure refuses to delete a
/// certificate a binding uses (409 "Cannot remove certificate with thumbprint {0} because it is
/// used for hostname {1}." [O]), so each waits for fhirlock's binding to go; a binding fhirlock
/// did not create that uses it keeps it (no step: deleting it would take that binding's TLS
/// away, and Azure would refuse anyway).
pub(super) fn delete_certificates(
    d: &Desired,
    o: &Observed,
    created: &[String],
    binding_goes: bool,
) -> Vec<Step> {
    let current = d.site_certificate_id();
    let current = o.site_certificate.as_ref().map(|c| (current, c));
    let formers = o
        .former_site_certificates
        .iter()
        .filter_map(|(id, c)| Some((id.clone(), c.as_ref()?)));
    current
        .into_iter()
        .chain(formers)
        .filter(|(id, _)| created.iter().any(|c| crate::id::same(c, id)))
        .filter_map(|(id, cert)| {
            let why = format!("the binding of {} to be removed first", d.gateway.host_name);
            delete_one(d, o, &id, cert, binding_goes, why)
        })
        .collect()
}

/// The delete of certificate `id` (as read: `cert`), only with this endpoint's owner tag. While
/// fhirlock's binding uses its thumbprint it waits (`why`) when the binding is to move or go
/// (`binding_moves`), and is left alone otherwise.
fn delete_one(
    d: &Desired,
    o: &Observed,
    id: &str,
    cert: &Value,
    binding_moves: bool,
    why: String,
) -> Option<Step> {
    let ours = cert
        .pointer(&format!("/tags/{}", crate::OWNER_TAG))
        .and_then(Value::as_str)
        == Some(d.owner.as_str());
    if !ours {
        return None;
    }
    let thumb = cert
        .pointer("/properties/thumbprint")
        .and_then(Value::as_str);
    let used = o
        .host_name_binding
        .as_ref()
        .and_then(|b| b.pointer("/properties/thumbprint"))
        .and_then(Value::as_str)
        .is_some_and(|t| thumb.is_some_and(|x| x.eq_ignore_ascii_case(t)));
    if used && !binding_moves {
        return None;
    }
    let change = FieldChange {
        path: "(resource)".into(),
        from: Some(json!(id.rsplit('/').next().unwrap_or_default())),
        to: None,
    };
    let s = step(
        StepKind::DeleteSiteCertificate,
        id,
        Method::Delete,
        api_version::WEB,
        Value::Null,
        vec![change],
        "delete the App Service certificate fhirlock uploaded",
    );
    Some(waiting(s, used.then_some(why)))
}
