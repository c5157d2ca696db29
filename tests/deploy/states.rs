//! The SecuredFhirEndpoint states whose health Flux and Argo CD judge, with the verdicts each
//! should give. Every status here is the one fhirlock writes in that state: an `Assessment` (what
//! one look at Azure found) taken through the reconcile's own pure steps,
//! `fhirlock::reconcile::decide::{decide, conclude}` (or `stalled`, for a pass that stops before
//! looking), exactly as `reconcile::report` then writes it. Only the assessments are made up here;
//! the conditions, messages and counts are fhirlock's.

use fhirlock::reconcile::decide::{self, Look, Written};
use fhirlock_api::SecuredFhirEndpoint;
use fhirlock_api::v1alpha1::{GatewayStatus, PendingOperation, SecuredFhirEndpointStatus};
use fhirlock_core::json::FieldChange;
use fhirlock_core::observed::api_version;
use fhirlock_core::plan::{Method, Plan, Step, StepKind};
use fhirlock_core::posture::{Finding, FindingCode, Severity};
use fhirlock_core::status::Assessment;
use fhirlock_core::{Certificate, Desired};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;

/// What fhirlock has written to the endpoint's status subresource, and how.
pub enum Status {
    /// Nothing: fhirlock has not looked at the endpoint yet.
    Nothing,
    /// The write-ahead before a pass's first create (`reconcile::apply::record_creations`): a
    /// merge patch of `status.createdResources` alone, field manager `fhirlock`.
    WriteAhead(Vec<String>),
    /// A whole status, by server-side apply with field manager `fhirlock`
    /// (`reconcile::report::write_status`).
    Apply(Value),
}

pub struct State {
    /// File name in deploy/argocd/testdata/ (without .yaml).
    pub name: &'static str,
    pub example: &'static str,
    pub status: Status,
    /// A spec change after the status was written, so that status describes an older generation.
    pub bump_generation: bool,
    pub kstatus: &'static str,
    pub argo: &'static str,
}

const T: &str = "2026-01-01T00:00:00Z";
const ENFORCE: &str = "fhir-endpoint.yaml";
const AUDIT: &str = "fhir-endpoint-audit.yaml";
const NS: &str = "fhir";

fn now() -> Time {
    Time(T.parse::<Timestamp>().unwrap())
}

/// What `example` asks for, as `reconcile::resolve` makes it (a stand-in PFX for a Secret).
fn desired(example: &str, name: &str) -> Desired {
    let obj = yaml_file(&root().join("examples").join(example)).remove(0);
    let sfe: SecuredFhirEndpoint = serde_json::from_value(obj).unwrap();
    let tls = &sfe.spec.gateway.tls;
    let certificate = match (&tls.key_vault_secret_id, &tls.key_vault_identity_id) {
        (Some(secret_id), Some(identity_id)) => Certificate::KeyVault {
            secret_id: secret_id.clone(),
            identity_id: identity_id.clone(),
        },
        _ => Certificate::Pfx {
            data_base64: "UEZY".into(),
            password: "pw".into(),
            fingerprint: "0123abcd".into(),
        },
    };
    Desired::from_spec(NS, &format!("health-{name}"), &sfe.spec, certificate)
}

/// One pass of the reconcile on `assessment`, as `reconcile::report::stage` concludes it: the
/// gates and writes (`decide`), what the apply stage did (`written`), then the status.
fn pass(
    d: &Desired,
    assessment: Assessment,
    gateway: Option<GatewayStatus>,
    written: Written,
) -> Value {
    let previous = SecuredFhirEndpointStatus::default();
    let look = Look {
        desired: d,
        assessment,
        gateway,
        previous: &previous,
        generation: Some(1),
        created: Some(now()),
    };
    let decision = decide::decide(&look, None);
    let c = decide::conclude(
        &look,
        decision,
        &written,
        std::time::Duration::from_secs(300),
        &now(),
    );
    serde_json::to_value(c.status).unwrap()
}

fn finding(code: FindingCode, severity: Severity, resource_id: &str, message: &str) -> Finding {
    Finding {
        code,
        severity,
        resource_id: resource_id.to_owned(),
        message: message.to_owned(),
    }
}

/// Cosmos DB accepts account keys: advisory, so it never keeps an endpoint from Ready.
fn key_auth(d: &Desired) -> Finding {
    finding(
        FindingCode::CosmosKeyAuthEnabled,
        Severity::Advisory,
        &d.cosmos_id,
        "Cosmos DB accepts account keys; prefer Entra ID data-plane RBAC and disableLocalAuth (fhirlock reports this, it does not change it)",
    )
}

/// The ways in of a wide-open estate: the site and Cosmos DB reachable from the internet.
fn wide_open(d: &Desired) -> Vec<Finding> {
    vec![
        finding(
            FindingCode::SiteDefaultAllow,
            Severity::High,
            &d.site_id,
            "the site's unmatched action is Allow, so any internet address reaches the FHIR API directly",
        ),
        finding(
            FindingCode::CosmosIpRule,
            Severity::High,
            &d.cosmos_id,
            "Cosmos DB IP rule 51.140.0.0/16 lets that address range reach the data directly",
        ),
        key_auth(d),
    ]
}

fn change(path: &str, from: Option<Value>, to: Value) -> FieldChange {
    FieldChange {
        path: path.to_owned(),
        from,
        to: Some(to),
    }
}

fn step(
    kind: StepKind,
    resource_id: &str,
    method: Method,
    changes: Vec<FieldChange>,
    reason: &str,
    waiting_for: Option<String>,
) -> Step {
    Step {
        kind,
        resource_id: resource_id.to_owned(),
        method,
        api_version: match kind {
            StepKind::Gateway => api_version::NETWORK,
            StepKind::CosmosLockdown => api_version::COSMOS,
            _ => api_version::WEB,
        }
        .to_owned(),
        body: json!({}),
        changes,
        reason: reason.to_owned(),
        waiting_for,
        creates: false,
        precondition: None,
    }
}

/// The plan once both subnets are in place: create the gateway, then lock the site and Cosmos DB
/// down behind it.
fn to_the_end(d: &Desired) -> Vec<Step> {
    let gateway = Step {
        creates: true,
        ..step(
            StepKind::Gateway,
            &d.gateway.id,
            Method::Put,
            vec![change(
                "(resource)",
                None,
                json!(format!("private-only gateway at {}", d.gateway.private_ip)),
            )],
            "the only way in: a private-only Application Gateway with an HTTPS listener for the FHIR host name",
            None,
        )
    };
    let site = step(
        StepKind::SiteAccessRestrictions,
        &d.site_config_id(),
        Method::Patch,
        vec![change(
            "properties.ipSecurityRestrictionsDefaultAction",
            Some(json!("Allow")),
            json!("Deny"),
        )],
        "only the gateway subnet may reach the site; everything else, the SCM site included, is denied",
        Some(format!(
            "gateway {} to be Succeeded, so the app stays reachable",
            d.gateway.name
        )),
    );
    let cosmos = step(
        StepKind::CosmosLockdown,
        &d.cosmos_id,
        Method::Patch,
        vec![change(
            "properties.ipRules",
            Some(json!([{"ipAddressOrRange": "51.140.0.0/16"}])),
            json!([]),
        )],
        "only the integration subnet may reach Cosmos DB",
        Some("the site to reach Cosmos DB through the integration subnet".into()),
    );
    vec![gateway, site, cosmos]
}

fn observed_gateway(d: &Desired) -> Option<GatewayStatus> {
    Some(GatewayStatus {
        id: Some(d.gateway.id.clone()),
        private_ip_address: Some(d.gateway.private_ip.clone()),
        provisioning_state: Some("Succeeded".into()),
        certificate_not_after: None,
    })
}

/// Enforce, nothing left to change, only the advisory finding.
fn ready() -> Value {
    let d = desired(ENFORCE, "ready");
    let assessment = Assessment {
        findings: vec![key_auth(&d)],
        ..Default::default()
    };
    pass(&d, assessment, observed_gateway(&d), Written::default())
}

/// Enforce: the pass PUT the gateway and stopped at the long-running operation ARM started.
fn reconciling() -> Value {
    let d = desired(ENFORCE, "reconciling");
    let assessment = Assessment {
        findings: wide_open(&d),
        plan: Plan {
            steps: to_the_end(&d),
        },
        ..Default::default()
    };
    let operation = decide::operation_of(&PendingOperation {
        resource_id: d.gateway.id.clone(),
        step: StepKind::Gateway.as_str().into(),
        method: "PUT".into(),
        api_version: api_version::NETWORK.into(),
        status_url: format!(
            "https://management.azure.com/subscriptions/{}/providers/Microsoft.Network/locations/uksouth/operations/7d3f0c1e?api-version={}",
            d.subscription,
            api_version::NETWORK
        ),
        kind: "AsyncOperation".into(),
        started: None,
    });
    let written = Written {
        count: 1,
        pending: Some((operation, StepKind::Gateway)),
        created: vec![d.gateway.id.clone()],
        failed: None,
    };
    pass(&d, assessment, None, written)
}

/// A pass that stopped before looking at Azure: the endpoint names a resource outside its
/// namespace's scopes (`reconcile::resolve`, then `reconcile::report::exit`).
fn stalled() -> Value {
    let d = desired(ENFORCE, "stalled");
    let scope = format!("/subscriptions/{}/resourceGroups/hscn-net", d.subscription);
    let message = format!(
        "{} is outside the Azure scopes namespace {NS} may touch ({scope})",
        d.site_id
    );
    let (status, _) = decide::stalled(
        "OutOfScope",
        &message,
        None,
        &SecuredFhirEndpointStatus::default(),
        Some(1),
        &now(),
    );
    serde_json::to_value(status).unwrap()
}

/// Enforce, nothing left to change, yet blocking findings remain: no step of fhirlock's closes
/// them.
fn enforce_findings() -> Value {
    let d = desired(ENFORCE, "enforce-findings");
    let assessment = Assessment {
        findings: vec![
            finding(
                FindingCode::GatewayPublicFrontend,
                Severity::High,
                &d.gateway.id,
                "the gateway has a public frontend appGwPublicFrontendIp, so the internet reaches the FHIR API through it",
            ),
            key_auth(&d),
        ],
        ..Default::default()
    };
    pass(&d, assessment, observed_gateway(&d), Written::default())
}

/// Audit: the estate is wide open and the plan is reported, never applied.
fn audit_findings() -> Value {
    let d = desired(AUDIT, "audit-findings");
    let assessment = Assessment {
        findings: wide_open(&d),
        plan: Plan {
            steps: to_the_end(&d),
        },
        audit: true,
        ..Default::default()
    };
    pass(&d, assessment, None, Written::default())
}

/// Audit: no way in, Azure as the spec says.
fn audit_clean() -> Value {
    let d = desired(AUDIT, "audit-clean");
    let assessment = Assessment {
        findings: vec![key_auth(&d)],
        audit: true,
        ..Default::default()
    };
    pass(&d, assessment, observed_gateway(&d), Written::default())
}

/// Audit: no way in, but Azure differs from the spec (the gateway's autoscale maximum), and Audit
/// never changes it.
fn audit_changes_pending() -> Value {
    let d = desired(AUDIT, "audit-changes-pending");
    let gateway = step(
        StepKind::Gateway,
        &d.gateway.id,
        Method::Put,
        vec![change(
            "properties.autoscaleConfiguration.maxCapacity",
            Some(json!(2)),
            json!(d.gateway.max_capacity),
        )],
        "the only way in: a private-only Application Gateway with an HTTPS listener for the FHIR host name",
        None,
    );
    let assessment = Assessment {
        findings: vec![key_auth(&d)],
        plan: Plan {
            steps: vec![gateway],
        },
        audit: true,
        ..Default::default()
    };
    pass(&d, assessment, observed_gateway(&d), Written::default())
}

fn state(
    name: &'static str,
    example: &'static str,
    status: Status,
    kstatus: &'static str,
    argo: &'static str,
) -> State {
    State {
        name,
        example,
        status,
        bump_generation: false,
        kstatus,
        argo,
    }
}

pub fn states() -> Vec<State> {
    let d = desired(ENFORCE, "creating");
    vec![
        // No status written: the CRD's default status ({observedGeneration: -1}) lags
        // metadata.generation, so kstatus does not read Current before fhirlock has looked
        // (flux2#4346).
        state("new", ENFORCE, Status::Nothing, "InProgress", "Progressing"),
        // The first pass recorded the subnets it is about to create, before its first status.
        state(
            "creating",
            ENFORCE,
            Status::WriteAhead(vec![
                d.gateway_subnet.id.clone(),
                d.integration_subnet.id.clone(),
            ]),
            "InProgress",
            "Progressing",
        ),
        state(
            "ready",
            ENFORCE,
            Status::Apply(ready()),
            "Current",
            "Healthy",
        ),
        state(
            "reconciling",
            ENFORCE,
            Status::Apply(reconciling()),
            "InProgress",
            "Progressing",
        ),
        state(
            "stalled",
            ENFORCE,
            Status::Apply(stalled()),
            "Failed",
            "Degraded",
        ),
        State {
            bump_generation: true,
            ..state(
                "stale-generation",
                ENFORCE,
                Status::Apply(ready()),
                "InProgress",
                "Progressing",
            )
        },
        state(
            "enforce-findings",
            ENFORCE,
            Status::Apply(enforce_findings()),
            "InProgress",
            "Degraded",
        ),
        state(
            "audit-findings",
            AUDIT,
            Status::Apply(audit_findings()),
            "InProgress",
            "Suspended",
        ),
        state(
            "audit-clean",
            AUDIT,
            Status::Apply(audit_clean()),
            "Current",
            "Healthy",
        ),
        // Audit never applies the plan, so the endpoint will not become Ready by itself.
        state(
            "audit-changes-pending",
            AUDIT,
            Status::Apply(audit_changes_pending()),
            "InProgress",
            "Suspended",
        ),
    ]
}
