//! The listener certificate's expiry, told three ways once resolve has read it from the Secret:
//! `status.gateway.certificateNotAfter`, the gauge
//! `fhirlock_certificate_expiry_timestamp_seconds` (the `FhirlockCertificateExpiresSoon` alert
//! reads it), and a Warning Event `CertificateExpiresSoon` from 21 days before, at most once a
//! day ([`super::memory::EndpointMemory::expiry_warning_due`]). A Key Vault certificate is never
//! seen by fhirlock, so it has none of the three.

use std::time::Instant;

use fhirlock_api::SecuredFhirEndpoint;
use fhirlock_core::certificate::Expiry;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::decide::{Look, Note};
use super::{Context, key, report};

/// The gauge and, when due, the Warning.
pub async fn report(ctx: &Context, sfe: &SecuredFhirEndpoint, expiry: Option<Expiry>) {
    let ns = sfe.namespace().unwrap_or_default();
    let not_after = expiry.map(|e| e.not_after);
    ctx.metrics
        .set_certificate_expiry(&ns, &sfe.name_any(), not_after);
    let Some(e) = expiry else { return };
    let secret = secret_name(sfe);
    let Some(text) = e.warning(&format!("Secret {ns}/{secret}")) else {
        return;
    };
    let due = ctx.memory.endpoint(&key(sfe), |m| {
        m.expiry_warning_due(e.not_after, Instant::now())
    });
    if due {
        let note = Note {
            warning: true,
            reason: "CertificateExpiresSoon",
            action: "CheckCertificate".into(),
            text,
        };
        report::publish(ctx, sfe, &note).await;
    }
}

/// `status.gateway.certificateNotAfter`, kept beside what was observed of the gateway (also
/// before the gateway exists).
pub fn into_look(look: &mut Look<'_>, expiry: Option<Expiry>) {
    let not_after = expiry.and_then(|e| Timestamp::from_second(e.not_after).ok().map(Time));
    if not_after.is_none() && look.gateway.is_none() {
        return;
    }
    look.gateway.get_or_insert_default().certificate_not_after = not_after;
}

fn secret_name(sfe: &SecuredFhirEndpoint) -> &str {
    sfe.spec
        .gateway
        .tls
        .secret_ref
        .as_ref()
        .map_or("?", |r| r.name.as_str())
}
