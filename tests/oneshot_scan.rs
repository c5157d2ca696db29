//! `fhirlock scan` against the emulator's wide-open estate (`examples/arm-emulator-estate.yaml`)
//! with one more, locked-down site that is not a FHIR server, as a security team runs it first:
//! every back door `audit` finds without a spec, and every one the emulator's exposure oracle
//! knows, is listed; nothing is written; the SARIF is valid SARIF 2.1.0; the starter spec is
//! admitted by the real apiserver as it is.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use fhirlock_core::posture::FindingCode;
use fhirlock_core::scan::CODES;
use fhirlock_testkit::Counts;
use fhirlock_tests::emulator::{
    Emulator, OPERATOR_OBJECT, SUBSCRIPTION, cosmos, emulator, fhirlock, site,
};
use fhirlock_tests::{kubectl, namespace, plane, text};
use serde_json::{Value, json};

/// The example estate, plus site `intranet-wiki` (closed to public traffic, HTTPS only, no FTP)
/// and one site per page of `WebApps_List`, so the scan must follow `nextLink`.
fn estate(dir: &Path) -> std::path::PathBuf {
    let root = testenv::workspace_root();
    let mut cfg: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("examples/arm-emulator-estate.yaml")).unwrap(),
    )
    .unwrap();
    cfg["behaviour"] = json!({"sitesPageSize": 1});
    let rg = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir");
    cfg["seed"].as_array_mut().unwrap().push(json!({
        "id": format!("{rg}/providers/Microsoft.Web/sites/intranet-wiki"),
        "body": {"location": "uksouth", "kind": "app,linux", "properties": {
            "serverFarmId": format!("{rg}/providers/Microsoft.Web/serverfarms/fhir-plan"),
            "httpsOnly": true, "publicNetworkAccess": "Disabled",
            "siteConfig": {"linuxFxVersion": "NODE|20-lts", "ftpsState": "Disabled", "minTlsVersion": "1.2"}
        }}
    }));
    let path = dir.join("estate.yaml");
    std::fs::write(&path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    path
}

/// (code, lower-cased resource ID) of each finding.
fn keyed(findings: &[Value]) -> BTreeSet<(String, String)> {
    findings
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_owned(),
                f["resource_id"].as_str().unwrap().to_ascii_lowercase(),
            )
        })
        .collect()
}

fn scanned<'a>(report: &'a Value, kind: &str, id: &str) -> &'a Value {
    report[kind]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"].as_str().unwrap().eq_ignore_ascii_case(id))
        .unwrap_or_else(|| panic!("{id} not in {kind}: {report}"))
}

/// `tests/fixtures/sarif/validate.py` in the conformance venv: (exit code, output).
fn validate_sarif(file: &Path) -> (i32, String) {
    let root = testenv::workspace_root();
    let venv = Command::new("bash")
        .arg(root.join("tests/emulator-conformance/venv.sh"))
        .output()
        .unwrap();
    assert!(venv.status.success(), "venv.sh: {}", text(&venv.stderr));
    let python = Path::new(text(&venv.stdout).trim()).join("bin/python");
    let out = Command::new(python)
        .arg(root.join("tests/fixtures/sarif/validate.py"))
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout) + &text(&out.stderr),
    )
}

#[tokio::test]
async fn scan_lists_every_back_door_writes_nothing_and_its_starter_spec_is_admitted() {
    let dir = tempfile::tempdir().unwrap();
    let emu: Emulator = emulator(estate(dir.path()).to_str().unwrap(), 0.01);
    let wiki = site().replace("fhir-server", "intranet-wiki");
    let specs = dir.path().join("specs");
    let sub = SUBSCRIPTION;

    emu.control.reset_stats().await.unwrap();
    let (code, out, err) = fhirlock(
        &emu,
        &[
            "scan",
            "--subscription",
            sub,
            "-o",
            "json",
            "--starter-specs",
            specs.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "blocking findings exit 1: {err}");
    assert!(
        err.is_empty(),
        "no progress when stderr is not a terminal: {err}"
    );
    let report: Value = serde_json::from_str(&out).unwrap();

    // Reads only: the two pages of sites, one list of accounts, each site's config/web (both
    // sites say publicNetworkAccess, so their private endpoint connections are not needed).
    let counts = Counts::of(&emu.control.stats().await.unwrap(), OPERATOR_OBJECT);
    assert_eq!((counts.writes, counts.deletes), (0, 0), "{counts:?}");
    assert_eq!(counts.reads, 2 + 1 + 2, "{counts:?}");

    // Everything `audit` reports of the codes a scan checks, it reports too: the same posture.
    let (acode, aout, aerr) = fhirlock(
        &emu,
        &["audit", "-f", "examples/fhir-endpoint.yaml", "-o", "json"],
    );
    assert_eq!(acode, 1, "{aerr}");
    let audit: Value = serde_json::from_str(&aout).unwrap();
    let scan_codes: Vec<&str> = CODES.iter().map(|c| c.as_str()).collect();
    let from_audit: BTreeSet<_> = keyed(audit["findings"].as_array().unwrap())
        .into_iter()
        .filter(|(c, _)| scan_codes.contains(&c.as_str()))
        .collect();
    let server = scanned(&report, "sites", &site());
    let account = scanned(&report, "cosmosDbAccounts", &cosmos());
    let mut from_scan = keyed(server["findings"].as_array().unwrap());
    from_scan.extend(keyed(account["findings"].as_array().unwrap()));
    assert!(!from_audit.is_empty());
    assert_eq!(from_scan, from_audit);
    for (c, _) in &from_scan {
        assert!(
            FindingCode::ALL.iter().any(|k| k.as_str() == c),
            "{c} is in the catalogue"
        );
    }

    // Every way in the exposure oracle knows has a blocking finding on its resource.
    let exposure = emu.control.exposure().await.unwrap();
    let open = |v: &Value| v["reachableFrom"].as_array().is_some_and(|r| !r.is_empty());
    let high = |id: &str, codes: &[&str]| {
        from_scan
            .iter()
            .any(|(c, r)| r == &id.to_ascii_lowercase() && codes.contains(&c.as_str()))
    };
    for (id, t) in exposure["sites"].as_object().unwrap() {
        if open(&t["main"]) {
            assert!(
                high(id, &["SiteDefaultAllow", "SiteAllowsOtherSources"]),
                "{id} main"
            );
        }
        if open(&t["scm"]) {
            assert!(high(id, &["ScmSitePublic"]), "{id} scm");
        }
    }
    for (id, t) in exposure["cosmos"].as_object().unwrap() {
        if open(&t["dataPlane"]) {
            assert!(
                high(
                    id,
                    &[
                        "CosmosVnetFilterOff",
                        "CosmosIpRule",
                        "CosmosAzureServicesBypass"
                    ]
                ),
                "{id}"
            );
        }
    }

    // The locked-down wiki: no way in through its public endpoint, and not a FHIR server.
    let w = scanned(&report, "sites", &wiki);
    assert!(w["fhirServer"].is_null(), "{w}");
    let wiki_codes: Vec<&str> = w["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(wiki_codes, ["SiteNotVnetIntegrated"]);

    // The FHIR server: its Cosmos DB account found, its starter spec written.
    let fhir = &server["fhirServer"];
    assert!(
        fhir["cosmosDbId"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(&cosmos()),
        "{fhir}"
    );
    let file = fhir["starterSpecFile"].as_str().unwrap();
    let written: Vec<_> = std::fs::read_dir(&specs).unwrap().collect();
    assert_eq!(written.len(), 1, "one spec per FHIR-looking site");

    // `kubectl apply --dry-run=server` takes it as it is, CRD, schema and CEL included.
    plane();
    let ns = namespace("scan-starter");
    let applied = kubectl(&["apply", "--dry-run=server", "-n", &ns, "-f", file]);
    assert!(
        applied.status.success(),
        "{}\n{}",
        text(&applied.stderr),
        std::fs::read_to_string(file).unwrap()
    );

    // SARIF 2.1.0, checked with a real validator against OASIS's schema; one result per finding.
    let (code, out, err) = fhirlock(&emu, &["scan", "--subscription", sub, "-o", "sarif"]);
    assert_eq!(code, 1, "{err}");
    let sarif: Value = serde_json::from_str(&out).unwrap();
    let total: usize = ["sites", "cosmosDbAccounts"]
        .iter()
        .flat_map(|k| report[k].as_array().unwrap())
        .map(|r| r["findings"].as_array().unwrap().len())
        .sum();
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), total);
    let sarif_file = dir.path().join("scan.sarif");
    std::fs::write(&sarif_file, &out).unwrap();
    assert_eq!(validate_sarif(&sarif_file), (0, String::new()));
    // The validator is not a rubber stamp: a result without its message is refused.
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]
        .as_object_mut()
        .unwrap()
        .remove("message");
    std::fs::write(&sarif_file, broken.to_string()).unwrap();
    assert_eq!(validate_sarif(&sarif_file).0, 1);

    // The table prints the starter spec when it is not written to a directory.
    let (code, out, _) = fhirlock(
        &emu,
        &["scan", "--subscription", sub, "--resource-group", "fhir"],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("looks like a FHIR server") && out.contains("kind: SecuredFhirEndpoint"),
        "{out}"
    );

    // Bad input is an error (exit 2) naming it, before or instead of anything else.
    emu.control.reset_stats().await.unwrap();
    let (code, _, err) = fhirlock(&emu, &["scan", "--subscription", "not-a-guid"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a subscription GUID"), "{err}");
    let (code, _, err) = fhirlock(
        &emu,
        &[
            "scan",
            "--subscription",
            sub,
            "--resource-group",
            "no-such-group",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("ResourceGroupNotFound"), "{err}");
    let counts = Counts::of(&emu.control.stats().await.unwrap(), OPERATOR_OBJECT);
    assert_eq!((counts.writes, counts.deletes), (0, 0), "{counts:?}");
}
