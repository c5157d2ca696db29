//! The pure reconcile core: everything fhirlock decides, as plain functions of values. No async,
//! no HTTP, no Kubernetes client — the binary does the I/O at the edges.
//!
//! One reconcile is `resolve → observe → plan → apply → report`; this crate is the middle:
//! [`preflight::check`] (stop before a half-built endpoint), [`posture::findings`] (every way in
//! other than the gateway), [`plan::plan`] (the ordered, minimal, safe changes), and
//! [`status::conditions`] (what to tell people and GitOps tools).

pub mod certificate;
pub mod component;
pub mod desired;
pub mod id;
pub mod json;
pub mod model;
pub mod net;
pub mod observed;
pub mod peers;
pub mod plan;
pub mod posture;
pub mod preflight;
pub mod reachable;
pub mod read_only;
pub mod scan;
#[cfg(feature = "simulate")]
pub mod simulate;
pub mod status;

pub use component::Component;
pub use desired::{Certificate, Desired};
pub use observed::Observed;
pub use plan::{Plan, Step, StepKind};

/// Azure tag on what fhirlock creates: `<namespace>/<name>` of the owning endpoint.
pub const OWNER_TAG: &str = fhirlock_api::OWNER_TAG;
/// Azure tag recording which certificate the gateway carries (ARM never returns it).
pub const TLS_TAG: &str = "fhirlock-tls";

/// Azure's rules for tag names and values, which apply to every resource type (Microsoft Learn,
/// "Use tags to organize your Azure resources", Limitations): at most 50 tags; a name of at most
/// 512 characters (128 for storage accounts), without `< > % & \ ? /`; a value of at most 256
/// characters. Returns what breaks them.
pub fn tag_violations(tags: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let mut out = Vec::new();
    if tags.len() > 50 {
        out.push(format!("{} tags (Azure allows 50)", tags.len()));
    }
    for (name, value) in tags {
        if let Some(c) = name.chars().find(|c| "<>%&\\?/".contains(*c)) {
            out.push(format!("tag name {name:?} contains {c:?}"));
        }
        if name.chars().count() > 512 {
            out.push(format!("tag name {name:?} is over 512 characters"));
        }
        if value.as_str().is_some_and(|v| v.chars().count() > 256) {
            out.push(format!("the value of tag {name:?} is over 256 characters"));
        }
    }
    out
}
