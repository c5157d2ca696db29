//! `spec.appService.hostHeader`: Default keeps the gateway overriding the Host header and says in
//! status that the FHIR server must use X-Original-Host; Preserve uploads the certificate, binds
//! the host name to the site, and only then lets the gateway pass the Host header through.

mod common;

use common::*;
use fhirlock_api::v1alpha1::HostHeader;
use fhirlock_core::plan::{self, StepKind, host_name};
use fhirlock_core::posture::{self, FindingCode};
use fhirlock_core::{Desired, Observed, status};
use serde_json::{Value, json};

const HOST: &str = "fhir.trust.nhs.uk";

fn preserve() -> Desired {
    let mut d = desired();
    d.host_header = HostHeader::Preserve;
    d
}

fn with_site_verification(mut o: Observed) -> Observed {
    if let Some(site) = o.site.as_mut() {
        site["properties"]["customDomainVerificationId"] = json!("ABC123VERIFY");
        site["properties"]["serverFarmId"] =
            json!("/subscriptions/x/resourceGroups/fhir/providers/Microsoft.Web/serverfarms/plan");
    }
    o
}

fn certificate(tag: &str, thumb: &str) -> Value {
    json!({"location": "uksouth", "tags": {"fhirlock-tls": tag}, "properties": {"thumbprint": thumb}})
}

fn binding(ssl: &str, thumb: &str) -> Value {
    json!({"properties": {"sslState": ssl, "thumbprint": thumb}})
}

fn kinds(d: &Desired, o: &Observed) -> Vec<(StepKind, bool)> {
    plan::plan(d, o)
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.kind,
                StepKind::SiteCertificate | StepKind::SiteHostNameBinding
            )
        })
        .map(|s| (s.kind, s.ready()))
        .collect()
}

/// (backend settings pickHostNameFromBackendAddress, probe pickHostNameFromBackendHttpSettings,
/// probe host)
fn gateway_host(d: &Desired, o: &Observed) -> (Value, Value, Value) {
    let body = plan::gateway_body(d, o).unwrap();
    let p = &body["properties"];
    (
        p["backendHttpSettingsCollection"][0]["properties"]["pickHostNameFromBackendAddress"]
            .clone(),
        p["probes"][0]["properties"]["pickHostNameFromBackendHttpSettings"].clone(),
        p["probes"][0]["properties"]["host"].clone(),
    )
}

/// (name, spec, observed, the host-name steps and whether each is ready, the gateway's host
/// settings, a HostNameNotBound finding, the TXT record status asks for)
type Case = (
    &'static str,
    Desired,
    Observed,
    Vec<(StepKind, bool)>,
    (Value, Value, Value),
    bool,
    Option<(String, String)>,
);

#[test]
fn the_order_is_certificate_then_binding_then_the_gateway_switch() {
    let marker = preserve().gateway.certificate.marker().unwrap();
    let base = with_site_verification(wide_open());
    let cert = |o: &Observed| Observed {
        site_certificate: Some(certificate(&marker, "AB12")),
        ..o.clone()
    };
    let bound = |o: &Observed, ssl: &str, thumb: &str| Observed {
        host_name_binding: Some(binding(ssl, thumb)),
        ..cert(o)
    };
    let overrides = (json!(true), json!(true), Value::Null);
    let through = (json!(false), json!(false), json!(HOST));
    let asuid = Some((format!("asuid.{HOST}"), "ABC123VERIFY".to_owned()));
    let table: Vec<Case> = vec![
        (
            "Default: nothing to bind, the gateway overrides the host",
            desired(),
            base.clone(),
            vec![],
            overrides.clone(),
            false,
            None,
        ),
        (
            "Preserve, nothing yet: the certificate now, the binding waits for it",
            preserve(),
            base.clone(),
            vec![
                (StepKind::SiteCertificate, true),
                (StepKind::SiteHostNameBinding, false),
            ],
            overrides.clone(),
            true,
            asuid.clone(),
        ),
        (
            "Preserve, certificate uploaded: the binding is ready; the gateway still overrides",
            preserve(),
            cert(&base),
            vec![(StepKind::SiteHostNameBinding, true)],
            overrides.clone(),
            true,
            asuid.clone(),
        ),
        (
            "Preserve, bound with the certificate: the host goes through, probe names it",
            preserve(),
            bound(&base, "SniEnabled", "ab12"),
            vec![],
            through.clone(),
            false,
            None,
        ),
        (
            "Preserve, a binding without TLS: bound again; the gateway does not pass through",
            preserve(),
            bound(&base, "Disabled", ""),
            vec![(StepKind::SiteHostNameBinding, true)],
            overrides.clone(),
            true,
            None,
        ),
        (
            "Preserve, the Secret renewed: certificate and binding again, the gateway stays",
            preserve(),
            Observed {
                site_certificate: Some(certificate("sha256:old", "AB12")),
                host_name_binding: Some(binding("SniEnabled", "OLD")),
                ..base.clone()
            },
            vec![
                (StepKind::SiteCertificate, true),
                (StepKind::SiteHostNameBinding, true),
            ],
            through.clone(),
            true,
            None,
        ),
    ];
    for (name, d, o, steps, gw, finding, record) in table {
        assert_eq!(kinds(&d, &o), steps, "{name}");
        assert_eq!(gateway_host(&d, &o), gw, "{name}");
        let found = posture::findings(&d, &o)
            .iter()
            .any(|f| f.code == FindingCode::HostNameNotBound);
        assert_eq!(found, finding, "{name}");
        assert_eq!(host_name::verification_record(&d, &o), record, "{name}");
    }
}

#[test]
fn a_preserve_convergence_binds_with_the_thumbprint_azure_computed() {
    let d = preserve();
    let (end, history, _) = converge(&d, &with_site_verification(wide_open()));
    let order: Vec<StepKind> = history.iter().map(|(s, _, _)| s.kind).collect();
    let at = |k: StepKind| order.iter().rposition(|x| *x == k).unwrap();
    assert!(at(StepKind::SiteCertificate) < at(StepKind::SiteHostNameBinding));
    assert!(
        at(StepKind::SiteHostNameBinding) < at(StepKind::Gateway),
        "the last gateway write is the switch: {order:?}"
    );
    let thumb = host_name::certificate_thumbprint(&end).unwrap();
    assert_eq!(
        end.host_name_binding.as_ref().unwrap()["properties"]["thumbprint"],
        json!(thumb)
    );
    let cert = &history
        .iter()
        .find(|(s, _, _)| s.kind == StepKind::SiteCertificate)
        .unwrap()
        .0;
    assert_eq!(cert.body["properties"]["pfxBlob"], "UEZY");
    assert!(
        format!("{cert:?}").contains("<redacted>") && !format!("{cert:?}").contains("\"pw\""),
        "Debug hides the password"
    );
    assert_eq!(gateway_host(&d, &end).0, json!(false));
}

#[test]
fn status_names_the_txt_record_or_the_forwarded_header() {
    let d = desired();
    let steps = status::next_steps(&d, None).join("\n");
    assert!(
        steps.contains("X-Original-Host") && steps.contains("hostHeader: Preserve"),
        "{steps}"
    );
    let p = preserve();
    let steps = status::next_steps(&p, None).join("\n");
    assert!(!steps.contains("X-Original-Host"), "{steps}");
    let record = host_name::verification_record(&p, &with_site_verification(wide_open())).unwrap();
    let step = status::verification_step(&p, &record);
    assert!(
        step.contains(&format!(
            "TXT record asuid.{HOST} with the value ABC123VERIFY"
        )),
        "{step}"
    );
}

#[test]
fn only_azures_missing_txt_record_error_counts_as_unverified() {
    for (message, unverified) in [
        (
            "A TXT record pointing from asuid.fhir.trust.nhs.uk to ABC was not found.",
            true,
        ),
        (
            "The certificate with thumbprint 'AB' does not match the hostname 'x'.",
            false,
        ),
        ("", false),
    ] {
        assert_eq!(
            host_name::is_verification_failure(message),
            unverified,
            "{message}"
        );
    }
}
