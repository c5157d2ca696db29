//! The fhirlock operator: the I/O edges around the pure core (`fhirlock-core`).
//!
//! - [`controller`]: `fhirlock run`, the operator's wiring; [`reconcile`]: one reconcile as
//!   resolve → observe → decide → apply → report, each stage a module.
//! - [`oneshot`]: `fhirlock audit | plan | apply` without a cluster.
//! - [`config`]: the operator configuration (tenancy, cloud).
//! - [`tls`]: the listener certificate, from a `kubernetes.io/tls` Secret to PFX.
//! - [`telemetry`]: metrics and the health endpoints; [`metrics_auth`]: `/metrics` over HTTPS for
//!   callers Kubernetes authorises; [`watch_health`]: whether the watches work, for `/healthz`.

pub mod config;
pub mod controller;
pub mod leader;
pub mod metrics_auth;
pub mod oneshot;
pub mod reconcile;
pub mod scan;
pub mod telemetry;
pub mod tls;
pub mod watch_health;
