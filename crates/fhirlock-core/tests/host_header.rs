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
            "public DNS TXT record asuid.{HOST} with the value ABC123VERIFY"
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

/// (name, spec, observed, status.createdResources, the teardown's host-name steps and whether
/// each is ready)
type TeardownCase<'a> = (
    &'static str,
    &'a Desired,
    &'a Observed,
    Vec<String>,
    Vec<(StepKind, bool)>,
);

/// The teardown's host-name steps and whether each is ready, in plan order.
fn teardown_kinds(d: &Desired, o: &Observed, created: &[String]) -> Vec<(StepKind, bool)> {
    plan::teardown(d, o, created)
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.kind,
                StepKind::DeleteGateway
                    | StepKind::DeleteHostNameBinding
                    | StepKind::DeleteSiteCertificate
            )
        })
        .map(|s| (s.kind, s.ready()))
        .collect()
}

#[test]
fn teardown_removes_the_binding_after_the_gateway_and_the_certificate_last_only_if_created() {
    use StepKind::{
        DeleteGateway as Gw, DeleteHostNameBinding as Bind, DeleteSiteCertificate as Cert,
    };
    let d = preserve();
    let (end, _, _) = converge(&d, &with_site_verification(wide_open()));
    let (cert_id, bind_id) = (d.site_certificate_id(), d.host_name_binding_id());
    let all = vec![
        gw_subnet(),
        int_subnet(),
        d.gateway.id.clone(),
        cert_id.clone(),
        bind_id.clone(),
    ];
    let without = |x: &str| -> Vec<String> { all.iter().filter(|c| *c != x).cloned().collect() };
    let no_gateway = Observed {
        gateway: None,
        ..end.clone()
    };
    let no_binding = Observed {
        host_name_binding: None,
        ..no_gateway.clone()
    };
    let mut retagged = end.clone();
    retagged.site_certificate.as_mut().unwrap()["tags"][fhirlock_core::OWNER_TAG] =
        json!("someone/else");
    let mut rebound = end.clone();
    rebound.host_name_binding.as_mut().unwrap()["properties"]["thumbprint"] = json!("THEIRS");
    // A gateway fhirlock did not create stays; the binding waits for the site's rule that lets it
    // in, and goes once that is removed.
    let adopted = without(&d.gateway.id);
    let mut rule_gone = end.clone();
    rule_gone.site_config.as_mut().unwrap()["properties"]["ipSecurityRestrictions"] = json!([]);
    let mut defaulted = d.clone();
    defaulted.host_header = HostHeader::Default;
    let table: Vec<TeardownCase> = vec![
        (
            "converged: the gateway first; the binding waits for it, the certificate for the binding",
            &d,
            &end,
            all.clone(),
            vec![(Gw, true), (Bind, false), (Cert, false)],
        ),
        (
            "the gateway gone: the binding now",
            &d,
            &no_gateway,
            all.clone(),
            vec![(Bind, true), (Cert, false)],
        ),
        (
            "the binding gone: the certificate now",
            &d,
            &no_binding,
            all.clone(),
            vec![(Cert, true)],
        ),
        (
            "a binding fhirlock did not create stays, and keeps the certificate it uses",
            &d,
            &no_gateway,
            without(&bind_id),
            vec![],
        ),
        (
            "a certificate fhirlock did not create stays",
            &d,
            &no_gateway,
            without(&cert_id),
            vec![(Bind, true)],
        ),
        (
            "a certificate that lost fhirlock's owner tag stays",
            &d,
            &retagged,
            all.clone(),
            vec![(Gw, true), (Bind, false)],
        ),
        (
            "a binding rebound to another certificate no longer holds fhirlock's",
            &d,
            &rebound,
            all.clone(),
            vec![(Gw, true), (Bind, false), (Cert, true)],
        ),
        (
            "an adopted gateway: the binding waits for fhirlock's access rule to go",
            &d,
            &end,
            adopted.clone(),
            vec![(Bind, false), (Cert, false)],
        ),
        (
            "an adopted gateway, the rule gone: the binding now",
            &d,
            &rule_gone,
            adopted,
            vec![(Bind, true), (Cert, false)],
        ),
        (
            "switched to Default before the deletion: what Preserve created still goes",
            &defaulted,
            &no_gateway,
            all.clone(),
            vec![(Bind, true), (Cert, false)],
        ),
    ];
    for (name, d, o, created, want) in table {
        assert_eq!(teardown_kinds(d, o, &created), want, "{name}");
    }
}

#[test]
fn a_preserve_teardown_ends_with_neither_binding_nor_certificate_and_the_site_kept() {
    let d = preserve();
    let (end, _, _) = converge(&d, &with_site_verification(wide_open()));
    let created = [
        gw_subnet(),
        int_subnet(),
        d.gateway.id.clone(),
        d.site_certificate_id(),
        d.host_name_binding_id(),
    ];
    let mut o = end.clone();
    let mut order = vec![];
    for _ in 0..10 {
        let ready: Vec<_> = plan::teardown(&d, &o, &created)
            .steps
            .into_iter()
            .filter(|s| s.ready())
            .collect();
        if ready.is_empty() {
            break;
        }
        for s in ready {
            order.push(s.kind);
            o = fhirlock_core::simulate::apply(&o, &s);
        }
    }
    assert!(plan::teardown(&d, &o, &created).is_empty(), "{order:?}");
    let at = |k: StepKind| order.iter().position(|x| *x == k).unwrap();
    assert!(at(StepKind::DeleteGateway) < at(StepKind::DeleteHostNameBinding));
    assert!(at(StepKind::DeleteHostNameBinding) < at(StepKind::DeleteSiteCertificate));
    assert!(o.host_name_binding.is_none() && o.site_certificate.is_none());
    assert!(o.site.is_some() && o.gateway.is_none());
}

/// `preserve()` after its Secret was renewed: another fingerprint, so another certificate name;
/// status records the certificate before.
fn renewed(before: &Desired) -> Desired {
    let mut d = before.clone();
    d.gateway.certificate = fhirlock_core::desired::Certificate::Pfx {
        data_base64: "UEZZ".into(),
        password: "pw2".into(),
        fingerprint: "def456".into(),
    };
    d.recorded_site_certificates = vec![before.site_certificate_id()];
    d
}

/// (name, observed, the renewal's host-name steps, what status forgets)
type RenewalCase<'a> = (
    &'static str,
    &'a Observed,
    Vec<(StepKind, String, bool)>,
    Vec<String>,
);

/// The renewal's host-name steps: kind, the certificate or binding it acts on, ready.
fn renewal_steps(d: &Desired, o: &Observed) -> Vec<(StepKind, String, bool)> {
    plan::plan(d, o)
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.kind,
                StepKind::SiteCertificate
                    | StepKind::SiteHostNameBinding
                    | StepKind::DeleteSiteCertificate
            )
        })
        .map(|s| (s.kind, s.resource_id.clone(), s.ready()))
        .collect()
}

#[test]
fn a_renewed_secret_is_a_new_certificate_the_binding_moves_to_then_the_old_one_goes() {
    use StepKind::{
        DeleteSiteCertificate as Del, SiteCertificate as Cert, SiteHostNameBinding as Bind,
    };
    let old = preserve();
    let (end, _, _) = converge(&old, &with_site_verification(wide_open()));
    let d = renewed(&old);
    let (old_id, new_id, bind_id) = (
        old.site_certificate_id(),
        d.site_certificate_id(),
        d.host_name_binding_id(),
    );
    assert!(
        !fhirlock_core::id::same(&old_id, &new_id),
        "a new name per certificate"
    );
    assert!(d.is_site_certificate_id(&old_id) && d.is_site_certificate_id(&new_id));
    let old_cert = end.site_certificate.clone().unwrap();
    // What observe reads after the renewal: nothing at the new name yet, the old one recorded.
    let start = Observed {
        site_certificate: None,
        former_site_certificates: vec![(old_id.clone(), Some(old_cert.clone()))],
        ..end.clone()
    };
    let uploaded = fhirlock_core::simulate::apply(
        &start,
        &plan::plan(&d, &start)
            .steps
            .into_iter()
            .find(|s| s.kind == Cert)
            .unwrap(),
    );
    let new_thumb = host_name::certificate_thumbprint(&uploaded).unwrap();
    let mut moved = uploaded.clone();
    moved.host_name_binding.as_mut().unwrap()["properties"]["thumbprint"] = json!(new_thumb);
    let mut not_ours = moved.clone();
    not_ours.former_site_certificates[0].1.as_mut().unwrap()["tags"][fhirlock_core::OWNER_TAG] =
        json!("someone/else");
    let old_gone = Observed {
        former_site_certificates: vec![(old_id.clone(), None)],
        ..moved.clone()
    };
    let table: Vec<RenewalCase> = vec![
        (
            "renewed: the new certificate now; the binding waits for it, the old one for the binding",
            &start,
            vec![
                (Cert, new_id.clone(), true),
                (Bind, bind_id.clone(), false),
                (Del, old_id.clone(), false),
            ],
            vec![],
        ),
        (
            "the new certificate uploaded: the binding moves; the old one still waits",
            &uploaded,
            vec![(Bind, bind_id.clone(), true), (Del, old_id.clone(), false)],
            vec![],
        ),
        (
            "the binding moved: the old certificate goes",
            &moved,
            vec![(Del, old_id.clone(), true)],
            vec![],
        ),
        (
            "an old certificate that lost fhirlock's owner tag stays",
            &not_ours,
            vec![],
            vec![],
        ),
        (
            "the old certificate gone: nothing left, and status forgets it",
            &old_gone,
            vec![],
            vec![old_id.clone()],
        ),
    ];
    for (name, o, want, gone) in table {
        assert_eq!(renewal_steps(&d, o), want, "{name}");
        assert_eq!(host_name::gone(o), gone, "{name}");
    }
    // Replayed step by step, the binding never names a certificate that does not exist, and the
    // gateway keeps passing the host through.
    let mut o = start.clone();
    let mut order = vec![];
    for _ in 0..10 {
        let ready: Vec<_> = plan::plan(&d, &o)
            .steps
            .into_iter()
            .filter(|s| s.ready())
            .collect();
        if ready.is_empty() {
            break;
        }
        for s in ready {
            order.push(s.kind);
            o = fhirlock_core::simulate::apply(&o, &s);
            let bound = o.host_name_binding.as_ref().unwrap()["properties"]["thumbprint"].clone();
            let exists = o
                .site_certificate
                .iter()
                .chain(
                    o.former_site_certificates
                        .iter()
                        .filter_map(|(_, c)| c.as_ref()),
                )
                .any(|c| c["properties"]["thumbprint"] == bound);
            assert!(
                exists,
                "after {:?} the binding names {bound}, which is gone",
                s.kind
            );
            assert!(host_name::passes_host_through(&d, &o), "after {:?}", s.kind);
        }
    }
    // The gateway's listener takes the renewed certificate too (a Gateway step, not counted).
    order.retain(|k| matches!(k, Cert | Bind | Del));
    assert_eq!(order, [Cert, Bind, Del]);
    assert!(plan::plan(&d, &o).is_empty());
    assert_eq!(host_name::gone(&o), vec![old_id]);
    assert!(host_name::binding_in_place(&o));
}

#[test]
fn a_teardown_after_a_renewal_deletes_every_certificate_fhirlock_created() {
    let old = preserve();
    let (end, _, _) = converge(&old, &with_site_verification(wide_open()));
    let d = renewed(&old);
    // Renewed and converged, then the Secret deleted with the endpoint: the name is unsuffixed.
    let mut gone_secret = d.clone();
    gone_secret.gateway.certificate = fhirlock_core::desired::Certificate::Unresolved {
        reason: "deleted".into(),
    };
    let (renewed_end, _, _) = converge(
        &d,
        &Observed {
            site_certificate: None,
            former_site_certificates: vec![(
                old.site_certificate_id(),
                Some(end.site_certificate.clone().unwrap()),
            )],
            ..end.clone()
        },
    );
    let created = [
        old.site_certificate_id(),
        d.site_certificate_id(),
        d.host_name_binding_id(),
    ];
    let o = Observed {
        gateway: None,
        host_name_binding: None,
        site_certificate: None,
        former_site_certificates: host_name::former_certificate_ids(&gone_secret, &created)
            .into_iter()
            .map(|id| {
                let c = if fhirlock_core::id::same(&id, &d.site_certificate_id()) {
                    renewed_end.site_certificate.clone()
                } else {
                    None
                };
                (id, c)
            })
            .collect(),
        ..renewed_end.clone()
    };
    let steps = plan::teardown(&gone_secret, &o, &created).steps;
    let deletes: Vec<_> = steps
        .iter()
        .filter(|s| s.kind == StepKind::DeleteSiteCertificate)
        .map(|s| (s.resource_id.clone(), s.ready()))
        .collect();
    assert_eq!(deletes, vec![(d.site_certificate_id(), true)]);
}
