//! The fhirlock operator: the I/O edges around the pure core (`fhirlock-core`).
//!
//! - [`controller`]: `fhirlock run`, the operator's wiring; [`reconcile`]: one reconcile as
//!   resolve → observe → decide → apply → report, each stage a module.
//! - [`oneshot`]: `fhirlock audit | plan | apply` without a cluster.
//! - [`config`]: the operator configuration (tenancy, cloud).
//! - [`tls`]: the listener certificate, from a `kubernetes.io/tls` Secret to PFX.

pub mod config;
pub mod controller;
pub mod leader;
pub mod oneshot;
pub mod reconcile;
pub mod scan;
pub mod telemetry;
pub mod tls;
