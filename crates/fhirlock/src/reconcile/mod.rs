//! One reconcile of a SecuredFhirEndpoint, as five stages with typed hand-offs:
//!
//! ```text
//! resolve (kube I/O) → observe (ARM reads) → decide (pure) → apply (ARM writes) → report (kube I/O)
//! ```
//!
//! [`reconcile`] below is the whole driver. Each stage is a module; only `decide` concludes
//! anything, and it is a plain function of values. What the operator remembers between
//! reconciles is in [`memory`].

pub mod apply;
mod certificate;
mod cleanup;
pub mod decide;
mod finalizer;
pub mod health;
pub mod memory;
pub mod observe;
pub mod report;
pub mod resolve;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fhirlock_api::SecuredFhirEndpoint;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;

use crate::telemetry::Metrics;
use memory::Memory;
use resolve::Identities;

/// Shared by every reconcile.
pub struct Context {
    pub client: kube::Client,
    pub identities: Identities,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Asked before every write to Azure or to the apiserver.
    pub leader: crate::leader::Gate,
    pub memory: Memory,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// How often a converged endpoint is compared with Azure again (jittered ±10%).
    pub resync: Duration,
    /// The share of a subscription's ARM buckets fhirlock may use (0–1).
    pub budget_share: f64,
    /// How fast ARM refills the write bucket (writes per second; Azure's is 10).
    pub write_refill_per_second: f64,
    /// How fast ARM refills the read bucket (reads per second; Azure's is 25).
    pub read_refill_per_second: f64,
    /// The largest bucket sizes fhirlock assumes (Azure's: 200 writes, 250 reads).
    pub write_bucket_size: u32,
    pub read_bucket_size: u32,
    /// How long after Cosmos DB is seen admitting the integration subnet the site may join it
    /// (`fhirlock_core::plan::FIREWALL_PROPAGATION`, 15 minutes, unless configured).
    pub cosmos_propagation: Duration,
    /// The least time between two reads of an endpoint's backend health (a POST, counted by ARM
    /// against the write bucket [U]).
    pub backend_health: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// The `error` label of the reconcile metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
        }
    }
}

/// `<namespace>/<name>`: the endpoint's key in [`Memory`].
pub fn key(sfe: &SecuredFhirEndpoint) -> String {
    format!("{}/{}", sfe.namespace().unwrap_or_default(), sfe.name_any())
}

/// One reconcile: the finalizer first; deletion runs [`cleanup`]; otherwise the five stages.
pub async fn reconcile(sfe: Arc<SecuredFhirEndpoint>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leader.may_act() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    if let Some(action) = finalizer::guard(&ctx, &sfe).await? {
        return Ok(action);
    }
    if sfe.metadata.deletion_timestamp.is_some() {
        return cleanup::run(&ctx, &sfe).await;
    }
    let started = Instant::now();
    match secure(&ctx, &sfe, started).await {
        Ok(action) => Ok(action),
        Err(exit) => report::exit(&ctx, &sfe, exit, started).await,
    }
}

/// The endpoint should be secured: the five stages.
async fn secure(
    ctx: &Context,
    sfe: &SecuredFhirEndpoint,
    started: Instant,
) -> Result<Action, Exit> {
    gates(ctx, sfe)?;
    let resolved = resolve::stage(ctx, sfe).await?; // tenancy, identity, certificate
    certificate::report(ctx, sfe, resolved.expiry).await; // its expiry: gauge, Warning
    let seen = observe::stage(ctx, sfe, &resolved).await?; // one poll, then the reads
    let mut look = seen.look(&resolved.desired, sfe);
    certificate::into_look(&mut look, resolved.expiry); // status.gateway.certificateNotAfter
    let mut decision = decide::decide(&look, apply::write_wait(ctx, &resolved)); // pure
    let checked = health::stage(ctx, sfe, &resolved, &seen, &decision).await; // backend health
    decision.assessment.reachability = checked.reachability;
    let written = apply::stage(ctx, sfe, &resolved, &seen, &decision).await?; // ARM writes
    let after = checked.requeue;
    report::stage(ctx, sfe, &look, decision, written, started, after).await // status, Events, metrics
}

/// Why a pass ended before reporting a conclusion; [`report::exit`] says it.
#[derive(Debug)]
pub enum Exit {
    /// Look again after this; counted in the reconcile metrics as `result` when given.
    Requeue(Duration, Option<decide::Result>),
    /// Cannot proceed before any Azure call (tenancy, identity, certificate).
    Stalled(resolve::Stall),
    /// An ARM call failed; `desired` is what the pass was driving towards.
    Failed(fhirlock_arm::ArmError, Box<fhirlock_core::Desired>),
    Kube(kube::Error),
}

/// Before every write: a replica that is not (or no longer) the leader stops the pass, and
/// writes nothing more, to Azure or to status.
pub fn still_leading(ctx: &Context) -> Result<(), Exit> {
    if ctx.leader.may_act() {
        Ok(())
    } else {
        Err(Exit::Requeue(Duration::from_secs(15), None))
    }
}

/// Only the leader reads or writes Azure; and a reconcile triggered by fhirlock's own status
/// write waits for the look it had already scheduled.
fn gates(ctx: &Context, sfe: &SecuredFhirEndpoint) -> Result<(), Exit> {
    still_leading(ctx)?;
    let rv = sfe.resource_version();
    let echo = ctx
        .memory
        .endpoint(&key(sfe), |m| m.echo_wait(rv.as_deref(), Instant::now()));
    match echo {
        Some(wait) => Err(Exit::Requeue(wait, None)),
        None => Ok(()),
    }
}
