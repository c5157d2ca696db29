//! The `SecuredFhirEndpoint` API (group `fhirlock.io`): Rust types, CRD generation and the
//! admission rules the apiserver enforces. No I/O here.

pub mod admission;
/// The shared test corpus (`tests/fixtures/`), for this crate's tests and the apiserver tests.
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod v1alpha1;

pub use v1alpha1::{SecuredFhirEndpoint, SecuredFhirEndpointSpec, SecuredFhirEndpointStatus};

use kube::CustomResourceExt;

/// API group of every fhirlock resource.
pub const GROUP: &str = "fhirlock.io";
/// Finalizer fhirlock puts on endpoints so that deletion can clean Azure first.
pub const FINALIZER: &str = "fhirlock.io/cleanup";
/// Annotation that, set to `"true"` on an endpoint being deleted, makes fhirlock release its
/// finalizer without cleaning up, and without any Azure call: the way out when cleanup cannot
/// finish (an identity revoked for good, a subscription gone). What was left is said in a
/// Warning Event.
pub const RELEASE_ANNOTATION: &str = "fhirlock.io/release-finalizer";
/// Field manager fhirlock uses for server-side apply.
pub const FIELD_MANAGER: &str = "fhirlock";
/// Azure tag on every resource fhirlock creates: `<namespace>/<name>` of the owning endpoint.
/// Azure tag names may not contain `< > % & \ ? /` (Microsoft Learn, "Use tags to organize your
/// Azure resources", Limitations), so no `fhirlock.io/` prefix here.
pub const OWNER_TAG: &str = "fhirlock-owner";

/// The CRD manifests, in the order they are installed.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON;
    let mut crd = SecuredFhirEndpoint::crd();
    // A new endpoint's status until fhirlock first writes one. kstatus (Flux's health checks)
    // reads an object without `status.observedGeneration` and without conditions as Current, so a
    // Flux Kustomization went green before anything was secured (fluxcd/flux2#4346). The
    // apiserver applies this default whenever it reads the object, so `observedGeneration` (-1)
    // lags `metadata.generation` and kstatus reads InProgress until fhirlock has looked.
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("status"));
        if let Some(status) = status {
            status.default = Some(JSON(serde_json::json!({"observedGeneration": -1})));
        }
    }
    // Deleting the CRD deletes every endpoint, and each then runs its deletionPolicy in Azure, so
    // GitOps tools must never prune it: Flux, Argo CD and Helm each read their own annotation.
    crd.metadata.annotations = Some(
        [
            ("kustomize.toolkit.fluxcd.io/prune", "disabled"),
            (
                "argocd.argoproj.io/sync-options",
                "Prune=false,Delete=false",
            ),
            ("helm.sh/resource-policy", "keep"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    vec![crd]
}

/// The CRD manifests as one multi-document YAML stream: what `fhirlock crd` prints and `crds/` holds.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("a CRD always serializes to YAML"));
    }
    out
}
