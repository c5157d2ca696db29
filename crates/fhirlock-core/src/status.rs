//! The status a reconcile reports: conditions as kstatus reads them, one per component, and the
//! next steps that are outside Azure. Pure: the caller passes the time and the previous
//! conditions, so a condition's lastTransitionTime moves only when its status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::component::Component;
use crate::desired::Desired;
use crate::plan::{Clock, Plan};
use crate::posture::Finding;
use crate::preflight::PreflightFailure;
use crate::reachable::{REACHABLE, Reachability};

/// What one look at Azure means for the endpoint: pre-flight failures, findings and the plan,
/// plus what the reconcile learnt while acting on it (an operation in flight, writes deferred, a
/// terminal error).
#[derive(Clone, Debug, Default)]
pub struct Assessment {
    pub preflight: Vec<PreflightFailure>,
    pub findings: Vec<Finding>,
    pub plan: Plan,
    /// Audit mode: the plan is reported, never applied.
    pub audit: bool,
    /// A long-running operation is in flight.
    pub operation_pending: bool,
    /// Writes were deferred to stay inside the subscription's ARM budget.
    pub throttled: bool,
    /// A terminal Azure error (message already free of secrets).
    pub terminal_error: Option<(String, String)>,
    /// Since when Cosmos DB has been seen admitting the integration subnet by its rule
    /// ([`crate::plan::admitted_since`]), for `status.cosmosRuleSince`.
    pub cosmos_rule_since: Option<Timestamp>,
    /// When the plan's wait for the Cosmos DB firewall ends ([`crate::plan::wait_ends`]): the
    /// time to look again, rather than polling.
    pub wait_ends: Option<Timestamp>,
    /// What the gateway's backend health says, if it was read (or may not be) this pass.
    pub reachability: Reachability,
    /// `hostHeader: Preserve` before the binding exists: the DNS record (name, TXT value) Azure
    /// verifies the host name by ([`crate::plan::host_name::verification_record`]).
    pub host_verification: Option<(String, String)>,
    /// Resources fhirlock created, no longer wants, and read as absent
    /// ([`crate::plan::waf::gone`], [`crate::plan::host_name::gone`]): dropped from
    /// `status.createdResources`.
    pub gone: Vec<String>,
}

impl Assessment {
    /// From one look at Azure, the time unknown (see [`crate::plan::plan`]).
    pub fn of(d: &Desired, o: &crate::Observed) -> Assessment {
        Assessment::at(d, o, &Clock::default())
    }

    /// From one look at Azure at the time `clock` says: pre-flight, then (only if it passed) the
    /// plan, and the findings either way.
    pub fn at(d: &Desired, o: &crate::Observed, clock: &Clock) -> Assessment {
        let preflight = crate::preflight::check(d, o);
        let plan = if preflight.is_empty() {
            crate::plan::plan_at(d, o, clock)
        } else {
            Plan::default()
        };
        Assessment {
            findings: crate::posture::findings(d, o),
            preflight,
            plan,
            audit: d.mode == fhirlock_api::v1alpha1::Mode::Audit,
            cosmos_rule_since: crate::plan::admitted_since(d, o, clock),
            wait_ends: crate::plan::wait_ends(d, o, clock),
            host_verification: crate::plan::host_name::verification_record(d, o),
            gone: [
                crate::plan::waf::gone(d, o),
                crate::plan::host_name::gone(o),
            ]
            .concat(),
            ..Default::default()
        }
    }
}

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

struct Cond {
    type_: &'static str,
    /// `None`: Unknown.
    ok: Option<bool>,
    reason: String,
    message: String,
}

fn c(type_: &'static str, ok: bool, reason: &str, message: impl Into<String>) -> Cond {
    Cond {
        type_,
        ok: Some(ok),
        reason: reason.to_owned(),
        message: message.into(),
    }
}

/// A condition fhirlock could not judge this time.
fn unknown(type_: &'static str, reason: &str, message: impl Into<String>) -> Cond {
    Cond {
        ok: None,
        ..c(type_, false, reason, message)
    }
}

/// The conditions for this assessment, keeping lastTransitionTime from `previous` when the status
/// did not change. Ready, Reconciling and Stalled come first, then one per component, then
/// PostureCompliant.
pub fn conditions(
    a: &Assessment,
    generation: Option<i64>,
    now: &Time,
    previous: &[Condition],
) -> Vec<Condition> {
    let blocking: Vec<_> = a.findings.iter().filter(|f| f.is_blocking()).collect();
    let mut all = Vec::from(progress(a, &blocking));
    all.extend(Component::ALL.map(|c| component_condition(a, c)));
    all.push(if a.terminal_error.is_some() {
        // Azure was not looked at (or not to the end): no claim either way.
        unknown(
            "PostureCompliant",
            "NotObserved",
            "fhirlock could not look at Azure this time: see Stalled; status.findings are as last observed",
        )
    } else {
        posture_condition(&blocking)
    });
    all.push(reachable_condition(&a.reachability, previous));
    all.into_iter()
        .map(|x| {
            let status = match x.ok {
                Some(true) => "True",
                Some(false) => "False",
                None => "Unknown",
            };
            let since = previous
                .iter()
                .find(|p| p.type_ == x.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: x.type_.to_owned(),
                status: status.to_owned(),
                reason: x.reason,
                message: x.message,
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// A component is converged when no step is pending on it and no finding counts against it.
fn component_condition(a: &Assessment, component: Component) -> Cond {
    let pending = a.plan.steps.iter().any(|s| s.kind.component() == component);
    let open = a
        .findings
        .iter()
        .any(|f| f.code.component() == Some(component));
    let ok = !pending && !open;
    // Without a plan (pre-flight stopped it, or Azure was not read) nothing pending proves
    // nothing: only an open finding still says the component is not in its end state.
    if ok && (a.terminal_error.is_some() || !a.preflight.is_empty()) {
        return unknown(
            component.condition_type(),
            "NotJudged",
            "not judged: fhirlock is stalled before planning (see Stalled)",
        );
    }
    let (good, bad) = match component {
        Component::Subnets => (
            "both subnets have their delegation and service endpoint",
            "a subnet lacks its delegation or service endpoint",
        ),
        Component::Gateway => (
            "the private-only gateway matches the spec",
            "the gateway is missing, differs from the spec or has a public frontend",
        ),
        Component::AppService => (
            "only the gateway subnet reaches the site; SCM locked; HTTPS only; TLS 1.2+; FTP off; VNet-integrated",
            "the site is reachable other than through the gateway, or not hardened",
        ),
        Component::Cosmos => (
            "only the integration subnet reaches Cosmos DB",
            "Cosmos DB is reachable from other networks",
        ),
    };
    let (reason, msg) = if ok {
        ("Converged", good.to_owned())
    } else if a.audit {
        ("AuditOnly", format!("{bad} (Audit mode: not changed)"))
    } else {
        ("Pending", bad.to_owned())
    };
    c(component.condition_type(), ok, reason, msg)
}

/// Reachable: True only when the gateway's health probe answers. Separate from Ready, which is
/// about the security posture: an endpoint can be locked down and unreachable (a person's Deny
/// rule for the gateway subnet, which fhirlock keeps, or a stopped app).
fn reachable_condition(r: &Reachability, previous: &[Condition]) -> Cond {
    match r {
        Reachability::Healthy(m) => c(REACHABLE, true, "BackendHealthy", m.clone()),
        Reachability::Unhealthy(m) => c(REACHABLE, false, "BackendUnhealthy", m.clone()),
        Reachability::Indeterminate { reason, message } => {
            unknown(REACHABLE, reason, message.clone())
        }
        Reachability::NotChecked(m) => unknown(REACHABLE, "NotChecked", m.clone()),
        Reachability::Kept => match previous.iter().find(|p| p.type_ == REACHABLE) {
            Some(p) => Cond {
                type_: REACHABLE,
                ok: match p.status.as_str() {
                    "True" => Some(true),
                    "False" => Some(false),
                    _ => None,
                },
                reason: p.reason.clone(),
                message: p.message.clone(),
            },
            None => unknown(
                REACHABLE,
                "NotChecked",
                "not checked yet: fhirlock reads the gateway's backend health once the endpoint has converged",
            ),
        },
    }
}

fn posture_condition(blocking: &[&Finding]) -> Cond {
    if blocking.is_empty() {
        c(
            "PostureCompliant",
            true,
            "NoFindings",
            "no way in other than the gateway",
        )
    } else {
        c(
            "PostureCompliant",
            false,
            "FindingsPresent",
            format!("{} finding(s): {}", blocking.len(), codes(blocking)),
        )
    }
}

/// Ready, Reconciling and Stalled, as kstatus reads them.
fn progress(a: &Assessment, blocking: &[&Finding]) -> [Cond; 3] {
    let compliant = blocking.is_empty();
    let stalled = a
        .preflight
        .first()
        .map(|f| (f.code.to_owned(), f.message.clone()))
        .or_else(|| a.terminal_error.clone());
    if let Some((reason, message)) = &stalled {
        [
            c(READY, false, "Stalled", message.clone()),
            c(
                RECONCILING,
                false,
                "Stalled",
                "waiting for a change to the spec, Azure or permissions",
            ),
            c(STALLED, true, reason, message.clone()),
        ]
    } else if a.audit {
        audit_progress(a, blocking)
    } else if a.plan.is_empty() && compliant {
        [
            c(
                READY,
                true,
                "Secured",
                "only the gateway reaches the FHIR API",
            ),
            c(RECONCILING, false, "Converged", "Azure matches the spec"),
            c(STALLED, false, "Converged", "Azure matches the spec"),
        ]
    } else if a.plan.is_empty() {
        // Findings that no step of fhirlock's closes: nothing is in progress, so say so plainly
        // (GitOps tools show Degraded rather than progressing for ever).
        let message = format!(
            "{} finding(s) fhirlock does not close: {}",
            blocking.len(),
            codes(blocking)
        );
        [
            c(READY, false, "FindingsPresent", message.clone()),
            c(
                RECONCILING,
                false,
                "FindingsPresent",
                "nothing left to change",
            ),
            c(STALLED, false, "FindingsPresent", message),
        ]
    } else {
        applying_progress(a, blocking)
    }
}

fn audit_progress(a: &Assessment, blocking: &[&Finding]) -> [Cond; 3] {
    let ready = if blocking.is_empty() && a.plan.is_empty() {
        c(
            READY,
            true,
            "Secured",
            "only the gateway reaches the FHIR API (Audit mode)",
        )
    } else if blocking.is_empty() {
        // No way in, but Azure differs from the spec: say where, since no finding explains it.
        let mut differ: Vec<&str> = a
            .plan
            .steps
            .iter()
            .map(|s| s.kind.component().condition_type())
            .collect();
        differ.sort();
        differ.dedup();
        c(
            READY,
            false,
            "ChangesPending",
            format!(
                "Audit mode: no finding, but {} planned change(s) not applied ({})",
                a.plan.steps.len(),
                differ.join(", ")
            ),
        )
    } else {
        c(
            READY,
            false,
            "FindingsPresent",
            format!(
                "Audit mode: {} finding(s), {} planned change(s) not applied",
                blocking.len(),
                a.plan.steps.len()
            ),
        )
    };
    [
        ready,
        c(
            RECONCILING,
            false,
            "AuditOnly",
            "Audit mode never writes to Azure",
        ),
        c(STALLED, false, "AuditOnly", "Audit mode"),
    ]
}

fn applying_progress(a: &Assessment, blocking: &[&Finding]) -> [Cond; 3] {
    let (reason, msg) = if a.throttled {
        (
            "Throttled",
            "writes deferred to stay within the subscription's ARM budget".to_owned(),
        )
    } else if a.operation_pending {
        (
            "WaitingForOperation",
            "waiting for an Azure long-running operation".to_owned(),
        )
    } else {
        (
            "Applying",
            format!("{} change(s) to make", a.plan.steps.len()),
        )
    };
    let first = a.plan.steps.first().map(|s| {
        format!(
            "{}: {}",
            s.kind,
            s.waiting_for.clone().unwrap_or_else(|| s.reason.clone())
        )
    });
    [
        c(
            READY,
            false,
            "Reconciling",
            first.unwrap_or_else(|| format!("{} finding(s) remain", blocking.len())),
        ),
        c(RECONCILING, true, reason, msg),
        c(STALLED, false, reason, "progressing"),
    ]
}

fn codes(f: &[&Finding]) -> String {
    let mut v: Vec<_> = f.iter().map(|f| f.code.as_str()).collect();
    v.dedup();
    v.join(", ")
}

/// Who, outside Azure, gives the endpoint an address on the private network and publishes its
/// DNS name: the wording of `status.nextSteps`. Per tenant (the operator's tenancy
/// configuration), because not every endpoint sits on the HSCN.
#[derive(Clone, Debug, PartialEq)]
pub struct PrivateNetwork {
    /// The network's name, as people know it ("HSCN").
    pub name: String,
    /// Who allocates the address on that network and forwards it to the gateway's private IP.
    pub addressing: String,
    /// Who publishes the DNS record for the host name on that network.
    pub dns: String,
}

impl Default for PrivateNetwork {
    /// The HSCN as it is run today. NHS Digital merged into NHS England on 1 February 2023, and
    /// the HSCN services moved with it:
    /// - addresses: "HSCN RIPE and private IP ranges are managed by the ... IP Address Management
    ///   (IPAM) team", reached through the HSCN Portal, while the consumer's network service
    ///   provider (CN-SP) routes them (HSCN consumer handbook, "Managing your live HSCN service",
    ///   <https://digital.nhs.uk/services/health-and-social-care-network/hscn-consumer-handbook/live-hscn>);
    /// - DNS: "At NHS England, we are responsible for the apex domain nhs.uk"; an organisation's
    ///   domain name administrator or its authorised technical contacts submit DNS change
    ///   requests to NHS England's DNS team (HSCN domain naming standards and policies,
    ///   "Management", <https://digital.nhs.uk/services/health-and-social-care-network/hscn-technical-guidance/domain-name-service-dns-guidance/domain-standards-and-guidance/management>).
    fn default() -> Self {
        PrivateNetwork {
            name: "HSCN".into(),
            addressing: "NHS England's HSCN IP Address Management (IPAM) team (through the HSCN Portal) and your HSCN connectivity supplier (CN-SP)".into(),
            dns: "NHS England's HSCN DNS team (a DNS change request from your organisation's nhs.uk domain name administrator or technical contact)".into(),
        }
    }
}

/// The next step while Azure has not verified the host name: the exact record to ask for.
pub fn verification_step(d: &Desired, (name, value): &(String, String)) -> String {
    format!(
        "Ask {} for a public DNS TXT record {name} with the value {value} (the App Service's customDomainVerificationId; App Service looks it up on the internet, so a record only in private DNS is not seen): Azure binds {} to the App Service only once it resolves",
        d.private_network.dns, d.gateway.host_name
    )
}

/// What people outside Azure still need to do, worded for the endpoint's private network.
pub fn next_steps(d: &Desired, gateway_ip: Option<&str>) -> Vec<String> {
    let ip = gateway_ip.unwrap_or(&d.gateway.private_ip);
    let net = &d.private_network;
    let mut steps = vec![
        format!(
            "Ask {} for an address on {} for this service, forwarded to the gateway's private IP {ip}",
            net.addressing, net.name
        ),
        format!(
            "Ask {} for a DNS record {} pointing at that {} address",
            net.dns, d.gateway.host_name, net.name
        ),
        format!(
            "Keep the certificate for {} valid: fhirlock updates the gateway when the certificate changes",
            d.gateway.host_name
        ),
    ];
    if !d.preserves_host() {
        // Application Gateway sends the client's Host in X-Original-Host (Learn "Application
        // Gateway FAQ"); it sends no X-Forwarded-Host unless a rewrite rule adds one.
        steps.push(format!(
            "The FHIR server receives Host {}.azurewebsites.net (spec.appService.hostHeader Default): it must build its absolute URLs (Bundle.link, fullUrl, Location) from the X-Original-Host header the gateway sends, which holds {}, or set hostHeader: Preserve",
            d.site_name(),
            d.gateway.host_name
        ));
    }
    if let crate::desired::Certificate::KeyVault {
        secret_id,
        identity_id,
    } = &d.gateway.certificate
    {
        steps.push(format!(
            "Grant the gateway's identity {identity_id} the Key Vault Secrets User role on {secret_id} (or get on secrets in the vault's access policy), and if the vault has a firewall, admit the gateway subnet {} (fhirlock adds its Microsoft.KeyVault service endpoint) or give the vault a private endpoint: fhirlock attaches the identity but does not grant it access nor change the vault", d.gateway_subnet.id
        ));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(network: PrivateNetwork) -> Desired {
        let sfe: fhirlock_api::SecuredFhirEndpoint =
            serde_json::from_value(fhirlock_api::fixtures::base_example()).unwrap();
        let mut d = Desired::from_spec(
            "fhir",
            "e",
            &sfe.spec,
            crate::Certificate::Unresolved { reason: "t".into() },
        );
        d.private_network = network;
        d
    }

    #[test]
    fn next_steps_name_who_runs_the_private_network_today() {
        let psn = PrivateNetwork {
            name: "PSN".into(),
            addressing: "the PSN service desk".into(),
            dns: "the council's DNS team".into(),
        };
        // (network, what the address and DNS steps must say, what they must not)
        let table = [
            (
                PrivateNetwork::default(),
                vec![
                    "Ask NHS England's HSCN IP Address Management (IPAM) team",
                    "for an address on HSCN for this service, forwarded to the gateway's private IP 10.20.1.10",
                    "Ask NHS England's HSCN DNS team",
                    "for a DNS record fhir.trust.nhs.uk pointing at that HSCN address",
                ],
                vec!["NHS Digital", "PSN"],
            ),
            (
                psn,
                vec![
                    "Ask the PSN service desk for an address on PSN for this service",
                    "Ask the council's DNS team for a DNS record fhir.trust.nhs.uk pointing at that PSN address",
                ],
                vec!["NHS", "HSCN"],
            ),
        ];
        for (network, says, never) in table {
            let steps = next_steps(&desired(network.clone()), None)[..2].join("\n");
            for s in says {
                assert!(
                    steps.contains(s),
                    "{network:?}: {s:?} missing from\n{steps}"
                );
            }
            for n in never {
                assert!(!steps.contains(n), "{network:?}: {n:?} in\n{steps}");
            }
        }
    }
}
