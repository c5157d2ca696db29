//! The ARM edge of a reconcile: `observe` (reads) and `apply` (writes). Thin on purpose: what to
//! read and write is decided in `fhirlock-core`; this only moves JSON.

use fhirlock_arm::{ArmClient, ArmError, Operation, WriteOutcome};
use fhirlock_core::observed::api_version;
use fhirlock_core::plan::{Method, Step};
use fhirlock_core::{Desired, Observed};
use serde_json::Value;

/// GETs everything the endpoint involves: 7 reads (the VNet carries its subnets). The gateway
/// and feature reads may be 404; the others become pre-flight failures when missing.
pub async fn observe(arm: &ArmClient, d: &Desired) -> Result<Observed, ArmError> {
    let (config_id, feature_id) = (d.site_config_id(), d.isolation_feature_id());
    let (vnet, gateway, site, site_config, cosmos, feature) = tokio::try_join!(
        arm.get(&d.vnet_id, api_version::NETWORK),
        arm.get(&d.gateway.id, api_version::NETWORK),
        arm.get(&d.site_id, api_version::WEB),
        arm.get(&config_id, api_version::WEB),
        arm.get(&d.cosmos_id, api_version::COSMOS),
        arm.get(&feature_id, api_version::FEATURES),
    )?;
    let farm_id = site
        .as_ref()
        .and_then(|s| s.pointer("/properties/serverFarmId"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let server_farm = match farm_id {
        Some(id) => arm.get(&id, api_version::WEB).await?,
        None => None,
    };
    Ok(Observed {
        vnet,
        gateway,
        site,
        site_config,
        server_farm,
        cosmos,
        isolation_feature: feature.and_then(|f| {
            f.pointer("/properties/state")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }),
    })
}

/// What one pass of writes did.
#[derive(Debug)]
pub enum Applied {
    /// Every ready step finished synchronously (there may be steps still waiting).
    Done { writes: usize },
    /// A step started a long-running operation; nothing else runs until it ends, which also
    /// serialises writes to one VNet.
    Pending {
        writes: usize,
        operation: Box<Operation>,
        step: Box<Step>,
    },
}

/// Runs the ready steps in order, stopping at the first long-running operation.
pub async fn apply(
    arm: &ArmClient,
    steps: &[Step],
    mut before_write: impl FnMut(&Step),
) -> Result<Applied, (usize, ArmError)> {
    let mut writes = 0;
    for step in steps.iter().filter(|s| s.ready()) {
        before_write(step);
        let outcome = match step.method {
            Method::Put => {
                arm.put(&step.resource_id, &step.api_version, &step.body)
                    .await
            }
            Method::Patch => {
                arm.patch(&step.resource_id, &step.api_version, &step.body)
                    .await
            }
            Method::Delete => arm.delete(&step.resource_id, &step.api_version).await,
        }
        .map_err(|e| (writes, e))?;
        writes += 1;
        if let WriteOutcome::Accepted(operation) = outcome {
            return Ok(Applied::Pending {
                writes,
                operation: Box::new(operation),
                step: Box::new(step.clone()),
            });
        }
    }
    Ok(Applied::Done { writes })
}
