//! The fhirlock operator: the I/O edges around the pure core (`fhirlock-core`).
//!
//! - [`azure`]: observe (ARM reads) and apply (ARM writes) for one endpoint.
//! - [`oneshot`]: `fhirlock audit | plan | apply` without a cluster.
//! - [`config`]: the operator configuration (tenancy, cloud).
//! - [`tls`]: the listener certificate, from a `kubernetes.io/tls` Secret to PFX.

pub mod azure;
pub mod config;
pub mod leader;
pub mod oneshot;
pub mod telemetry;
pub mod tls;
