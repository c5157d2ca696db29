//! The FHIR server never loses its database while fhirlock converges (issue #12, item 7).
//!
//! `fhirlock apply` runs against the emulator's wide-open estate, whose Cosmos DB account filters
//! by IP rules (`0.0.0.0` lets the app in from Azure). Once the site joins the integration subnet,
//! its calls carry the subnet's identity through the `Microsoft.AzureCosmosDB` service endpoint,
//! which IP rules no longer match; and a Cosmos DB firewall change takes up to 15 minutes to
//! reach the data plane (Microsoft Learn, "Configure IP firewall in Azure Cosmos DB"). The
//! emulator's oracle (`GET /_emulator/exposure`, `sites.<id>.outbound`) judges the app's own
//! calls against the firewall Cosmos DB applies at that instant; it is sampled all through the
//! convergence, and every sample must say the app reaches Cosmos DB.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fhirlock_tests::emulator::{Emulator, bin, cosmos, emulator, site, vnet};
use fhirlock_tests::text;
use serde_json::Value;

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tls_files(emu: &Emulator) -> (PathBuf, PathBuf) {
    let (cert, key) = testenv::self_signed("fhir.trust.nhs.uk").unwrap();
    let (c, k) = (emu.dir().join("tls.crt"), emu.dir().join("tls.key"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c, k)
}

/// What the oracle says of the app's calls to Cosmos DB: where they come from, and whether the
/// firewall in effect admits them.
fn app_to_cosmos(x: &Value) -> (String, bool, String) {
    let out = &x["sites"][site()]["outbound"];
    let verdict = &out["cosmos"][cosmos()];
    (
        out["source"].as_str().unwrap_or("?").to_owned(),
        verdict["reachable"] == true,
        verdict["reason"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn the_app_reaches_cosmos_at_every_instant_of_convergence() {
    let scale = 0.01;
    let emu = emulator("arm-emulator-estate.yaml", scale);
    let int_subnet = format!("{}/subnets/snet-fhir-int", vnet());
    let first = emu.control.exposure().await.unwrap();
    assert_eq!(
        app_to_cosmos(&first),
        ("azure-address".into(), true, app_to_cosmos(&first).2),
        "before: IP rule 0.0.0.0 lets the app in"
    );

    let tls = tls_files(&emu);
    let log_path = emu.dir().join("apply.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(bin("fhirlock"))
        .args(["apply", "-f", "examples/fhir-endpoint.yaml", "--tls-cert"])
        .arg(&tls.0)
        .arg("--tls-key")
        .arg(&tls.1)
        .args(["--timeout-seconds", "300"])
        .envs(emu.env())
        .current_dir(testenv::workspace_root())
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let mut apply = Running(child);

    // Sample the oracle while apply runs, then until no firewall change is on its way.
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut samples, mut lost, mut sources) = (0, Vec::new(), Vec::<String>::new());
    let mut exited = None;
    loop {
        let x = emu.control.exposure().await.unwrap();
        let (source, reachable, reason) = app_to_cosmos(&x);
        samples += 1;
        if !reachable {
            lost.push(format!("{source}: {reason}"));
        }
        if sources.last() != Some(&source) {
            sources.push(source);
        }
        if exited.is_none() {
            exited = apply.0.try_wait().unwrap();
        }
        let pending = x["cosmos"][cosmos()]["dataPlane"]["pendingFirewallChange"] == true;
        if (exited.is_some() && !pending) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = text(&std::fs::read(&log_path).unwrap());
    assert_eq!(exited.and_then(|s| s.code()), Some(0), "apply:\n{log}");
    assert!(
        lost.is_empty(),
        "the app lost Cosmos DB in {} of {samples} samples, first: {}\napply:\n{log}",
        lost.len(),
        lost[0]
    );
    // The samples saw the move: from an Azure address to the integration subnet.
    assert_eq!(
        sources,
        ["azure-address".to_owned(), format!("subnet:{int_subnet}")],
        "{log}"
    );
    assert!(
        log.contains("waiting for SiteVnetIntegration: Cosmos DB's firewall to apply the rule"),
        "apply says what it waits for:\n{log}"
    );

    // And the order on the wire: the site joined the subnet only once the rule had been in
    // place for the emulator's propagation delay (900 s of Azure time).
    let reqs = emu
        .control
        .call("GET", "/_emulator/requests?writesOnly=true", None)
        .await
        .unwrap();
    let writes: Vec<&Value> = reqs["requests"].as_array().unwrap().iter().collect();
    let at = |pick: &dyn Fn(&Value) -> bool| -> i64 {
        let w = writes.iter().find(|w| pick(w)).expect("the write was sent");
        millis(w["time"].as_str().unwrap())
    };
    let rule = at(&|w| {
        w["method"] == "PATCH"
            && w["path"].as_str().unwrap().eq_ignore_ascii_case(&cosmos())
            && w["body"].to_string().contains("snet-fhir-int")
    });
    let join = at(&|w| {
        w["method"] == "PATCH"
            && w["path"].as_str().unwrap().eq_ignore_ascii_case(&site())
            && w["body"]["properties"]["virtualNetworkSubnetId"].is_string()
    });
    assert!(
        join - rule >= (900.0 * scale * 1000.0) as i64,
        "the site joined {} ms after the rule",
        join - rule
    );
}

/// Milliseconds since the epoch of the request log's `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn millis(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 {
        s.get(r)
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("{s}"))
    };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}
