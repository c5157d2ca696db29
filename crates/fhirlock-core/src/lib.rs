//! The pure reconcile core: everything fhirlock decides, as plain functions of values. No async,
//! no HTTP, no Kubernetes client — the binary does the I/O at the edges.
//!
//! One reconcile is `resolve → observe → plan → apply → report`; this crate is the middle:
//! [`preflight::check`] (stop before a half-built endpoint), [`posture::findings`] (every way in
//! other than the gateway), [`plan::plan`] (the ordered, minimal, safe changes), and
//! [`status::conditions`] (what to tell people and GitOps tools).

pub mod component;
pub mod desired;
pub mod id;
pub mod json;
pub mod model;
pub mod net;
pub mod observed;
pub mod plan;
pub mod posture;
pub mod preflight;
pub mod simulate;
pub mod status;

pub use component::Component;
pub use desired::{Certificate, Desired};
pub use observed::Observed;
pub use plan::{Plan, Step, StepKind};

/// Azure tag on what fhirlock creates: `<namespace>/<name>` of the owning endpoint.
pub const OWNER_TAG: &str = fhirlock_api::OWNER_TAG;
/// Azure tag recording which certificate the gateway carries (ARM never returns it).
pub const TLS_TAG: &str = "fhirlock.io/tls";
