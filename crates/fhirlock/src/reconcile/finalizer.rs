//! fhirlock's finalizer (`fhirlock.io/cleanup`): added before anything is written to Azure, so
//! that deletion can clean up first; released once cleanup is done. JSON patches with a `test`
//! operation, so a concurrent change to the finalizer list fails the patch instead of being lost.

use fhirlock_api::{FINALIZER, SecuredFhirEndpoint};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::Context;

fn api(ctx: &Context, sfe: &SecuredFhirEndpoint) -> Api<SecuredFhirEndpoint> {
    Api::namespaced(ctx.client.clone(), &sfe.namespace().unwrap_or_default())
}

/// Adds the finalizer to a live endpoint that lacks it. `Some` when the reconcile ends here:
/// the patch itself brings the endpoint back through the watch, and a deleted endpoint without
/// the finalizer has nothing left to clean.
pub async fn guard(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
) -> Result<Option<Action>, kube::Error> {
    if sfe.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(None);
    }
    if sfe.metadata.deletion_timestamp.is_some() {
        return Ok(Some(Action::await_change()));
    }
    let ops = if sfe.finalizers().is_empty() {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": sfe.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    patch(ctx, sfe, ops).await?;
    Ok(Some(Action::await_change()))
}

/// Removes the finalizer: Kubernetes may then delete the endpoint.
pub async fn release(ctx: &Context, sfe: &SecuredFhirEndpoint) -> Result<(), kube::Error> {
    let Some(i) = sfe.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{i}");
    let ops = json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]);
    match patch(ctx, sfe, ops).await {
        // Already gone with the object: nothing to release.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}

async fn patch(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    ops: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
    api(ctx, sfe)
        .patch::<SecuredFhirEndpoint>(
            &sfe.name_any(),
            &PatchParams::default(),
            &Patch::Json(patch),
        )
        .await?;
    Ok(())
}
