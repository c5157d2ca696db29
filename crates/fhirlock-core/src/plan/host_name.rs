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
//! 3. The gateway's backend settings stop overriding the host (`pickHostNameFromBackendAddress:
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

/// Uploads (or replaces, when the Secret changed) the certificate for the host name.
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

/// Teardown: the certificate fhirlock uploaded, only if recorded as created and still carrying
/// this endpoint's owner tag. Azure refuses to delete a certificate a binding uses (409 "Cannot
/// remove certificate with thumbprint {0} because it is used for hostname {1}." [O]), so it waits
/// for fhirlock's binding to go; a binding fhirlock did not create that uses it keeps it (no step:
/// deleting it would take that binding's TLS away, and Azure would refuse anyway).
pub(super) fn delete_certificate(
    d: &Desired,
    o: &Observed,
    created: &[String],
    binding_goes: bool,
) -> Option<Step> {
    let id = d.site_certificate_id();
    let cert = o.site_certificate.as_ref()?;
    let ours = cert
        .pointer(&format!("/tags/{}", crate::OWNER_TAG))
        .and_then(Value::as_str)
        == Some(d.owner.as_str());
    if !ours || !created.iter().any(|c| crate::id::same(c, &id)) {
        return None;
    }
    let thumb = certificate_thumbprint(o);
    let used = o
        .host_name_binding
        .as_ref()
        .and_then(|b| b.pointer("/properties/thumbprint"))
        .and_then(Value::as_str)
        .is_some_and(|t| thumb.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(t)));
    if used && !binding_goes {
        return None;
    }
    let change = FieldChange {
        path: "(resource)".into(),
        from: Some(json!(id.rsplit('/').next().unwrap_or_default())),
        to: None,
    };
    let s = step(
        StepKind::DeleteSiteCertificate,
        &id,
        Method::Delete,
        api_version::WEB,
        Value::Null,
        vec![change],
        "delete the App Service certificate fhirlock uploaded",
    );
    let why = used.then(|| format!("the binding of {} to be removed first", d.gateway.host_name));
    Some(waiting(s, why))
}
