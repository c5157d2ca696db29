//! `crds/` is generated from the Rust types; this fails when someone changes the API without
//! running `make crds`, so what users install is always what the code validates.

#[test]
fn committed_crds_match_the_code() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crds/securedfhirendpoints.fhirlock.io.yaml"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = fhirlock_api::crds_yaml();
    assert!(
        committed == generated,
        "crds/securedfhirendpoints.fhirlock.io.yaml is out of date with crates/fhirlock-api: run `make crds` and commit the result"
    );
}
