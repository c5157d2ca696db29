//! Deletion: with deletionPolicy Delete, remove what fhirlock created or added, one
//! long-running operation at a time, then let the finalizer go. Retain (and Audit mode, which
//! never wrote) leaves Azure as it is. Two ways out when the cleanup cannot finish, both without
//! any Azure call and both said in a Warning Event naming what is left in Azure: the annotation
//! `fhirlock.io/release-finalizer: "true"`, and a namespace being deleted that no longer yields
//! the identity the cleanup needs (nobody can put it back: the apiserver refuses new objects in
//! a terminating namespace).

use std::time::Duration;

use fhirlock_api::v1alpha1::{DeletionPolicy, Mode};
use fhirlock_api::{RELEASE_ANNOTATION, SecuredFhirEndpoint};
use fhirlock_arm::{ArmError, ErrorClass};
use fhirlock_core::plan;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};

use super::apply::{self, Applied};
use super::decide::Note;
use super::report::publish;
use super::{Context, Error, finalizer, key, observe};

/// One look at the teardown; the finalizer goes once nothing is left to remove.
pub async fn run(ctx: &Context, sfe: &SecuredFhirEndpoint) -> Result<Action, Error> {
    match teardown(ctx, sfe).await {
        Ok(()) => {
            ctx.metrics
                .forget_endpoint(&sfe.namespace().unwrap_or_default(), &sfe.name_any());
            ctx.memory.forget(&key(sfe));
            // The finalizer write is gated like every other: a deposed leader releases nothing.
            if !ctx.leader.may_act() {
                return Ok(Action::requeue(Duration::from_secs(15)));
            }
            finalizer::release(ctx, sfe).await?;
            Ok(Action::await_change())
        }
        Err((why, after)) => {
            tracing::info!(%why, "cleanup in progress");
            Ok(Action::requeue(after))
        }
    }
}

/// How a deletion starts, from the object alone.
#[derive(Debug, PartialEq)]
pub enum Start {
    /// Let the finalizer go without cleaning up (the metric's reason, and the Event).
    Release(&'static str, Note),
    /// deletionPolicy Retain, or Audit mode: nothing to remove.
    Retain(Note),
    /// Remove what fhirlock created or added.
    Teardown,
}

/// What a deletion does before any Azure call, or any read of the namespace: the release
/// annotation first (it is how a person unsticks a cleanup that cannot finish, whatever the
/// policy), then the policy.
pub fn start(sfe: &SecuredFhirEndpoint) -> Start {
    let released = sfe
        .annotations()
        .get(RELEASE_ANNOTATION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if released {
        let text = format!(
            "released by the annotation {RELEASE_ANNOTATION}: no Azure call was made, and {}",
            left_in_azure(sfe)
        );
        return Start::Release(
            "annotation",
            Note::warning("FinalizerReleased", "FinalizerReleased", text),
        );
    }
    if sfe.spec.deletion_policy == DeletionPolicy::Retain || sfe.spec.mode == Mode::Audit {
        let note = "deletionPolicy Retain: Azure is left as it is";
        return Start::Retain(Note::normal("Retained", "Retained", note));
    }
    Start::Teardown
}

/// The cleanup cannot resolve its identity (`why`). In a terminating namespace that will never
/// change, so the finalizer goes (`Some`, the Event); otherwise it waits for someone to fix it.
pub fn identity_gone(sfe: &SecuredFhirEndpoint, why: &str, terminating: bool) -> Option<Note> {
    terminating.then(|| {
        let text = format!(
            "namespace {} is being deleted and the cleanup cannot act ({why}): released without an Azure call, and {}",
            sfe.namespace().unwrap_or_default(),
            left_in_azure(sfe)
        );
        Note::warning("FinalizerReleased", "FinalizerReleased", text)
    })
}

/// What stays in Azure when the finalizer goes without a cleanup. With Retain, everything, as
/// ever; with Delete, what a cleanup would have removed.
fn left_in_azure(sfe: &SecuredFhirEndpoint) -> String {
    if sfe.spec.deletion_policy == DeletionPolicy::Retain || sfe.spec.mode == Mode::Audit {
        return "deletionPolicy Retain leaves Azure as it is anyway".into();
    }
    let created = sfe
        .status
        .as_ref()
        .map(|s| s.created_resources.clone())
        .unwrap_or_default();
    let created = if created.is_empty() {
        "nothing recorded in status.createdResources".to_owned()
    } else {
        format!("status.createdResources: {}", created.join(", "))
    };
    // The rule's name as fhirlock writes it now (one written by an earlier version is named
    // fhirlock-gateway): the one a person would look for in the portal.
    let rule = fhirlock_core::peers::rule_name(&format!(
        "{}/{}",
        sfe.namespace().unwrap_or_default(),
        sfe.name_any()
    ));
    format!(
        "left in Azure: {created}; the site's access rule {rule} (fhirlock-gateway if an earlier fhirlock version wrote it) and VNet integration, and the Cosmos DB VNet rule for the integration subnet (remove them by hand if they are no longer wanted; the site and Cosmos DB stay closed)"
    )
}

/// `Ok` when nothing is left to remove (or the finalizer may go regardless); otherwise why
/// not yet, and when to look again.
async fn teardown(ctx: &Context, sfe: &SecuredFhirEndpoint) -> Result<(), (String, Duration)> {
    match start(sfe) {
        Start::Release(reason, note) => {
            release_without_cleanup(ctx, sfe, reason, &note, false).await;
            return Ok(());
        }
        Start::Retain(note) => {
            publish(ctx, sfe, &note).await;
            return Ok(());
        }
        Start::Teardown => {}
    }
    if !ctx.leader.may_act() {
        return Err(("waiting for leadership".into(), Duration::from_secs(15)));
    }
    let resolved = match ctx.identities.resolve(sfe).await {
        Ok(r) => r,
        Err(s) => {
            let why = format!("{}: {}", s.reason, s.message);
            let terminating = namespace_terminating(ctx, sfe).await;
            if let Some(note) = identity_gone(sfe, &why, terminating) {
                release_without_cleanup(ctx, sfe, "namespace_deleted", &note, true).await;
                return Ok(());
            }
            return Err((format!("cannot delete: {why}"), Duration::from_secs(60)));
        }
    };
    let (d, arm) = (resolved.desired, resolved.arm);
    let created = sfe
        .status
        .as_ref()
        .map(|s| s.created_resources.clone())
        .unwrap_or_default();
    let observed = observe::read_for_teardown(&arm, &d, &created)
        .await
        .map_err(|e| (format!("reading Azure: {e}"), backoff_for(&e)))?;
    let teardown = plan::teardown(&d, &observed, &created);
    if teardown.is_empty() {
        // Safe, but the FHIR API goes dark: nothing else may reach the site or the database.
        let note = Note::warning(
            "Deleted",
            "Deleted",
            "removed what fhirlock created or added; the App Service and Cosmos DB stay closed to everything, so the FHIR API is unreachable until another gateway is admitted",
        );
        publish(ctx, sfe, &note).await;
        return Ok(());
    }
    let ready: Vec<_> = teardown.steps.into_iter().filter(|s| s.ready()).collect();
    match apply::run(&arm, &ready, |_| ctx.leader.may_act()).await {
        Ok(Applied::Stopped { .. }) => Err(("leadership lost".into(), Duration::from_secs(15))),
        Ok(Applied::Done { answers }) => Err((
            format!("{} removal(s) done, more to do", answers.len()),
            Duration::from_millis(500),
        )),
        Ok(Applied::Pending {
            operation, step, ..
        }) => {
            let text = format!("{} {}", step.kind, step.resource_id);
            publish(ctx, sfe, &Note::normal("AzureDelete", "AzureDelete", text)).await;
            Err((
                format!("waiting for {}", step.kind),
                operation.next_poll_in(None),
            ))
        }
        Err((_, e)) => {
            let note = Note::warning("CleanupFailed", "CleanupFailed", e.to_string());
            publish(ctx, sfe, &note).await;
            Err((format!("cleanup failed: {e}"), backoff_for(&e)))
        }
    }
}

/// The Event and the metric of a finalizer let go without cleanup. In a terminating namespace
/// the apiserver refuses the Event on the endpoint, and the namespace takes its Events with it,
/// so it is also recorded on the Namespace object (cluster-scoped: it lands in `default`, and
/// outlives the namespace by the Event TTL).
async fn release_without_cleanup(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    reason: &str,
    note: &Note,
    on_namespace: bool,
) {
    if !ctx.leader.may_act() {
        return;
    }
    tracing::warn!(reason, note = %note.text, "releasing the finalizer without cleanup");
    ctx.metrics.released_without_cleanup(reason);
    publish(ctx, sfe, note).await;
    if on_namespace {
        let namespace = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Namespace".into()),
            name: sfe.namespace(),
            ..ObjectReference::default()
        };
        let text = format!("SecuredFhirEndpoint {}: {}", sfe.name_any(), note.text);
        let ev = KubeEvent {
            type_: EventType::Warning,
            reason: note.reason.to_owned(),
            note: Some(text.chars().take(1000).collect()),
            action: note.action.clone(),
            secondary: Some(sfe.object_ref(&())),
        };
        if let Err(e) = ctx.recorder.publish(&ev, &namespace).await {
            tracing::warn!(error = %e, "publishing an event on the namespace");
        }
    }
}

/// Whether the endpoint's namespace is being deleted. Asked of the apiserver itself, with what
/// fhirlock may already do everywhere: a dry-run create of an Event there. The NamespaceLifecycle
/// admission plugin refuses any create in a terminating namespace with the cause
/// `NamespaceTerminating`; a dry run stores nothing. (fhirlock may not read Namespace objects,
/// and the namespace's own Role for it is deleted with the namespace.) Anything else, a
/// failure included, is "no": waiting is the safe answer.
async fn namespace_terminating(ctx: &Context, sfe: &SecuredFhirEndpoint) -> bool {
    let ns = sfe.namespace().unwrap_or_default();
    let probe = Event {
        metadata: ObjectMeta {
            generate_name: Some("fhirlock-namespace-probe-".into()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        action: Some("Probe".into()),
        reason: Some("Probe".into()),
        type_: Some("Normal".into()),
        reporting_controller: Some("fhirlock.io/operator".into()),
        reporting_instance: Some("fhirlock".into()),
        regarding: Some(sfe.object_ref(&())),
        ..Event::default()
    };
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match Api::<Event>::namespaced(ctx.client.clone(), &ns)
        .create(&params, &probe)
        .await
    {
        Err(kube::Error::Api(s)) => terminating_cause(&s),
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, "asking whether namespace {ns} is terminating");
            false
        }
    }
}

/// The apiserver's refusal because the namespace is terminating.
fn terminating_cause(s: &kube::core::Status) -> bool {
    s.code == 403
        && s.details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

fn backoff_for(e: &ArmError) -> Duration {
    e.retry_after.unwrap_or(match e.class {
        ErrorClass::Throttled | ErrorClass::Transient | ErrorClass::Conflict => {
            Duration::from_secs(10)
        }
        ErrorClass::Terminal | ErrorClass::Auth => Duration::from_secs(120),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhirlock_api::SecuredFhirEndpointStatus;

    fn endpoint(policy: DeletionPolicy, annotation: Option<&str>) -> SecuredFhirEndpoint {
        let mut sfe: SecuredFhirEndpoint =
            serde_yaml::from_str(include_str!("../../../../examples/fhir-endpoint.yaml")).unwrap();
        sfe.metadata.namespace = Some("fhir".into());
        sfe.spec.deletion_policy = policy;
        if let Some(v) = annotation {
            sfe.metadata.annotations = Some([(RELEASE_ANNOTATION.to_owned(), v.to_owned())].into());
        }
        sfe.status = Some(SecuredFhirEndpointStatus {
            created_resources: vec!["/subnets/snet-fhir-int".into(), "/gw".into()],
            ..SecuredFhirEndpointStatus::default()
        });
        sfe
    }

    #[test]
    fn a_deletion_starts_by_the_annotation_then_the_policy() {
        use DeletionPolicy::{Delete, Retain};
        let table = [
            (Delete, None, "Teardown"),
            (Retain, None, "Retain"),
            (Delete, Some("true"), "Release"),
            (Delete, Some(" True "), "Release"),
            (Retain, Some("true"), "Release"),
            (Delete, Some("false"), "Teardown"),
            (Delete, Some("yes"), "Teardown"),
            (Delete, Some(""), "Teardown"),
        ];
        for (policy, annotation, want) in table {
            let got = match start(&endpoint(policy, annotation)) {
                Start::Release(reason, note) => {
                    assert_eq!(
                        (reason, note.reason, note.warning),
                        ("annotation", "FinalizerReleased", true)
                    );
                    assert!(note.text.contains("no Azure call"), "{}", note.text);
                    "Release"
                }
                Start::Retain(note) => {
                    assert_eq!(note.reason, "Retained");
                    "Retain"
                }
                Start::Teardown => "Teardown",
            };
            assert_eq!(got, want, "{policy:?} {annotation:?}");
        }
    }

    #[test]
    fn what_is_left_names_the_created_resources_and_the_rules() {
        let Start::Release(_, note) = start(&endpoint(DeletionPolicy::Delete, Some("true"))) else {
            panic!("not released")
        };
        // The example's name in namespace fhir: the rule as fhirlock names it now.
        let rule = fhirlock_core::peers::rule_name("fhir/patient-records");
        for part in [
            "/subnets/snet-fhir-int",
            "/gw",
            rule.as_str(),
            "fhirlock-gateway",
            "VNet integration",
            "Cosmos DB VNet rule",
        ] {
            assert!(note.text.contains(part), "{part}: {}", note.text);
        }
        let mut none = endpoint(DeletionPolicy::Delete, Some("true"));
        none.status = None;
        let Start::Release(_, note) = start(&none) else {
            panic!("not released")
        };
        assert!(
            note.text
                .contains("nothing recorded in status.createdResources"),
            "{}",
            note.text
        );
        let Start::Release(_, note) = start(&endpoint(DeletionPolicy::Retain, Some("true"))) else {
            panic!("not released")
        };
        assert!(note.text.contains("Retain"), "{}", note.text);
    }

    #[test]
    fn a_missing_identity_releases_only_in_a_terminating_namespace() {
        let sfe = endpoint(DeletionPolicy::Delete, None);
        assert_eq!(identity_gone(&sfe, "IdentityNotFound: gone", false), None);
        let note = identity_gone(&sfe, "IdentityNotFound: gone", true).expect("released");
        assert_eq!((note.reason, note.warning), ("FinalizerReleased", true));
        for part in [
            "namespace fhir is being deleted",
            "IdentityNotFound: gone",
            "/gw",
        ] {
            assert!(note.text.contains(part), "{part}: {}", note.text);
        }
    }

    #[test]
    fn only_the_namespace_lifecycle_refusal_means_terminating() {
        // The apiserver's answer, as NamespaceLifecycle shapes it.
        let status = |code: u16, cause: &str| -> kube::core::Status {
            serde_json::from_value(serde_json::json!({
                "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": code,
                "message": "events \"x\" is forbidden: unable to create new content in namespace fhir because it is being terminated",
                "details": {"name": "x", "kind": "events", "causes": [
                    {"reason": cause, "message": "namespace fhir is being terminated", "field": "metadata.namespace"}
                ]}
            }))
            .unwrap()
        };
        assert!(terminating_cause(&status(403, "NamespaceTerminating")));
        assert!(!terminating_cause(&status(403, "FieldValueForbidden")));
        assert!(!terminating_cause(&status(404, "NamespaceTerminating")));
        assert!(!terminating_cause(
            &kube::core::Status::failure("m", "Forbidden").with_code(403)
        ));
    }
}
