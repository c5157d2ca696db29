//! The listener certificate (a PFX and its password) travels in the gateway step's body: nothing
//! that prints a step may show it.

mod common;

use common::*;
use fhirlock_core::plan::{self, StepKind};
use fhirlock_core::{Certificate, status};

#[test]
fn a_step_never_prints_the_certificate_or_its_password() {
    let mut d = desired();
    d.gateway.certificate = Certificate::Pfx {
        data_base64: "UEZYLXNlY3JldC1ieXRlcw==".into(),
        password: "correct-horse-battery-staple".into(),
        fingerprint: "abc123".into(),
    };
    let p = plan::plan(&d, &wide_open());
    let gw = p
        .steps
        .iter()
        .find(|s| s.kind == StepKind::Gateway)
        .unwrap();
    // The body does carry them: that is what ARM needs.
    let body = gw.body.to_string();
    assert!(
        body.contains("correct-horse-battery-staple") && body.contains("UEZYLXNlY3JldC1ieXRlcw==")
    );
    let assessment = status::Assessment::of(&d, &wide_open());
    for printed in [
        format!("{gw:?}"),
        format!("{gw:#?}"),
        format!("{p:?}"),
        format!("{assessment:?}"),
    ] {
        assert!(
            !printed.contains("correct-horse-battery-staple"),
            "{printed}"
        );
        assert!(!printed.contains("UEZYLXNlY3JldC1ieXRlcw=="), "{printed}");
        assert!(printed.contains("<redacted>"));
    }
}
