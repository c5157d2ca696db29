//! The SecuredFhirEndpoint states whose health Flux and Argo CD judge, with the verdicts each
//! should give.

use super::*;

pub struct State {
    /// File name in deploy/argocd/testdata/ (without .yaml).
    pub name: &'static str,
    pub example: &'static str,
    pub status: Option<Value>,
    /// A spec change after the status was written, so that status describes an older generation.
    pub bump_generation: bool,
    pub kstatus: &'static str,
    pub argo: &'static str,
}

const T: &str = "2026-01-01T00:00:00Z";
const ENFORCE: &str = "fhir-endpoint.yaml";
const AUDIT: &str = "fhir-endpoint-audit.yaml";

/// One condition, as written for generation 1.
fn cond(t: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({
        "type": t,
        "status": if status { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": T,
    })
}

/// The component conditions, all in their end state or not.
fn components(ok: bool, audit: bool) -> Vec<Value> {
    let reason = if ok {
        "Converged"
    } else if audit {
        "AuditOnly"
    } else {
        "Pending"
    };
    let message = if ok {
        "in its end state"
    } else {
        "not yet in its end state"
    };
    let mut v: Vec<Value> = [
        "SubnetsReady",
        "GatewayReady",
        "AppServiceLocked",
        "CosmosLocked",
    ]
    .iter()
    .map(|t| cond(t, ok, reason, message))
    .collect();
    v.push(if ok {
        cond(
            "PostureCompliant",
            true,
            "NoFindings",
            "no way in other than the gateway",
        )
    } else {
        cond(
            "PostureCompliant",
            false,
            "FindingsPresent",
            "2 finding(s): AppServicePublic, CosmosPublicNetwork",
        )
    });
    v
}

/// `(status, reason, message)` of a condition.
type Said<'a> = (bool, &'a str, &'a str);

/// A status written for generation 1: Ready, Reconciling and Stalled, then the component
/// conditions in their end state (`ok`) or not (`audit`: Audit mode leaves them so).
fn status(
    ready: Said,
    reconciling: Said,
    stalled: Said,
    ok: bool,
    audit: bool,
    findings: i64,
) -> Value {
    let mut conditions: Vec<Value> = [
        ("Ready", ready),
        ("Reconciling", reconciling),
        ("Stalled", stalled),
    ]
    .into_iter()
    .map(|(t, (s, reason, message))| cond(t, s, reason, message))
    .collect();
    conditions.extend(components(ok, audit));
    json!({
        "observedGeneration": 1,
        "conditions": conditions,
        "findingCount": findings,
        "lastSyncTime": T,
    })
}

fn state(
    name: &'static str,
    example: &'static str,
    status: Option<Value>,
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
    let converged = (false, "Converged", "Azure matches the spec");
    let ready = status(
        (true, "Secured", "only the gateway reaches the FHIR API"),
        converged,
        converged,
        true,
        false,
        0,
    );
    let out_of_scope = "spec.appService.id is outside the scopes allowed for namespace fhir";
    let audit_only = (false, "AuditOnly", "Audit mode never writes to Azure");
    let audit_stalled = (false, "AuditOnly", "Audit mode");
    vec![
        // kstatus's known gap (flux2#4346): no status at all reads as Current.
        state("new", ENFORCE, None, "Current", "Progressing"),
        state("ready", ENFORCE, Some(ready.clone()), "Current", "Healthy"),
        state(
            "reconciling",
            ENFORCE,
            Some(status(
                (
                    false,
                    "Reconciling",
                    "CreateGateway: the gateway subnet's Microsoft.Web endpoint is Succeeded",
                ),
                (
                    true,
                    "WaitingForOperation",
                    "waiting for an Azure long-running operation",
                ),
                (false, "WaitingForOperation", "progressing"),
                false,
                false,
                2,
            )),
            "InProgress",
            "Progressing",
        ),
        state(
            "stalled",
            ENFORCE,
            Some(status(
                (false, "Stalled", out_of_scope),
                (
                    false,
                    "Stalled",
                    "waiting for a change to the spec, Azure or permissions",
                ),
                (true, "OutOfScope", out_of_scope),
                false,
                false,
                0,
            )),
            "Failed",
            "Degraded",
        ),
        State {
            bump_generation: true,
            ..state(
                "stale-generation",
                ENFORCE,
                Some(ready),
                "InProgress",
                "Progressing",
            )
        },
        state(
            "enforce-findings",
            ENFORCE,
            Some(status(
                (
                    false,
                    "FindingsPresent",
                    "AppServicePublic, CosmosPublicNetwork: fhirlock cannot close them",
                ),
                (false, "FindingsPresent", "nothing left to change"),
                (false, "FindingsPresent", "not stalled"),
                false,
                false,
                2,
            )),
            "InProgress",
            "Degraded",
        ),
        state(
            "audit-findings",
            AUDIT,
            Some(status(
                (
                    false,
                    "FindingsPresent",
                    "Audit mode: 2 finding(s), 5 planned change(s) not applied",
                ),
                audit_only,
                audit_stalled,
                false,
                true,
                2,
            )),
            "InProgress",
            "Suspended",
        ),
        state(
            "audit-clean",
            AUDIT,
            Some(status(
                (
                    true,
                    "Secured",
                    "only the gateway reaches the FHIR API (Audit mode)",
                ),
                audit_only,
                audit_stalled,
                true,
                true,
                0,
            )),
            "Current",
            "Healthy",
        ),
    ]
}
