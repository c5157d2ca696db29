//! The ARM edge of a reconcile: `observe` (reads) and `apply` (writes). Thin on purpose: what to
//! read and write is decided in `fhirlock-core`; this only moves JSON.

use fhirlock_arm::{ArmClient, ArmError, Operation, WriteOutcome};
use fhirlock_core::observed::{self, Slot, api_version};
use fhirlock_core::plan::{Method, Step};
use fhirlock_core::{Desired, Observed};
use serde_json::Value;

/// GETs everything the endpoint involves: 7 reads (the VNet carries its subnets). The gateway
/// and feature reads may be 404; the others become pre-flight failures when missing.
pub async fn observe(arm: &ArmClient, d: &Desired) -> Result<Observed, ArmError> {
    let (config_id, feature_id) = (d.site_config_id(), d.isolation_feature_id());
    // All six run to their answer even when one fails (`join!`, not `try_join!`): a dropped
    // request is still counted by ARM, and must be by fhirlock's metrics too.
    let (vnet, gateway, site, site_config, cosmos, feature) = tokio::join!(
        arm.get(&d.vnet_id, api_version::NETWORK),
        arm.get(&d.gateway.id, api_version::NETWORK),
        arm.get(&d.site_id, api_version::WEB),
        arm.get(&config_id, api_version::WEB),
        arm.get(&d.cosmos_id, api_version::COSMOS),
        arm.get(&feature_id, api_version::FEATURES),
    );
    let (vnet, gateway, site, site_config, cosmos, feature) =
        (vnet?, gateway?, site?, site_config?, cosmos?, feature?);
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

/// What ARM answered to one write that finished at once: the resource as it now is (`None` when
/// the answer carried no body).
#[derive(Debug)]
pub struct Answer {
    pub resource_id: String,
    pub body: Option<Value>,
}

/// What one pass of writes did.
#[derive(Debug)]
pub enum Applied {
    /// Every ready step finished synchronously (there may be steps still waiting).
    Done { answers: Vec<Answer> },
    /// A step started a long-running operation; nothing else runs until it ends, which also
    /// serialises writes to one VNet.
    Pending {
        answers: Vec<Answer>,
        operation: Box<Operation>,
        step: Box<Step>,
    },
}

impl Applied {
    /// Writes sent, the one that started an operation included.
    pub fn writes(&self) -> usize {
        match self {
            Applied::Done { answers } => answers.len(),
            Applied::Pending { answers, .. } => answers.len() + 1,
        }
    }
}

/// Runs the ready steps in order, stopping at the first long-running operation.
pub async fn apply(
    arm: &ArmClient,
    steps: &[Step],
    mut before_write: impl FnMut(&Step),
) -> Result<Applied, (usize, ArmError)> {
    let mut answers = Vec::new();
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
        .map_err(|e| (answers.len(), e))?;
        match outcome {
            WriteOutcome::Done { body, .. } => answers.push(Answer {
                resource_id: step.resource_id.clone(),
                body,
            }),
            WriteOutcome::Accepted(operation) => {
                return Ok(Applied::Pending {
                    answers,
                    operation: Box::new(operation),
                    step: Box::new(step.clone()),
                });
            }
        }
    }
    Ok(Applied::Done { answers })
}

/// `known` with the resources in `reread` read again (one GET each). Falls back to a full
/// [`observe`] when one of them is not a resource `Observed` holds.
pub async fn reread(
    arm: &ArmClient,
    d: &Desired,
    mut known: Observed,
    reread: &[String],
) -> Result<Observed, ArmError> {
    for id in reread {
        let Some(slot) = observed::slot(d, id) else {
            return observe(arm, d).await;
        };
        let version = api_version_of(&slot);
        known.absorb(&slot, arm.get(id, version).await?);
    }
    Ok(known)
}

fn api_version_of(slot: &Slot) -> &'static str {
    match slot {
        Slot::Vnet | Slot::Subnet(_) | Slot::Gateway => api_version::NETWORK,
        Slot::Site | Slot::SiteConfig => api_version::WEB,
        Slot::Cosmos => api_version::COSMOS,
    }
}
