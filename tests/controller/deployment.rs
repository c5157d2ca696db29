//! The operator as deployed: two replicas with a Lease, the RBAC in `deploy/`, and its share of
//! ARM's write bucket.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fhirlock_tests::operator::tail;

use super::*;

#[test]
fn with_two_replicas_only_the_leader_writes_and_the_other_takes_over() {
    let _s = serial();
    let ns = namespace("e2e-leader");
    let lease_ns = namespace("e2e-leader-lease");
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    // Replica b acts as another principal, so the emulator's stats tell the two apart.
    let outsider = OUTSIDER_OBJECT;
    let subscription = format!("/subscriptions/{SUBSCRIPTION}");
    rt().block_on(emu.control.assign_role(outsider, &subscription, &["*"]))
        .unwrap();
    let cfg = tenancy(emu.dir(), &[&ns], None);
    let le = ["--leader-election", "--lease-namespace", lease_ns.as_str()];
    let mut a = operator(
        &emu,
        &cfg,
        None,
        &[&le[..], &["--identity", "replica-a"]].concat(),
    );
    let b = operator_with_env(
        &emu,
        &cfg,
        &[&le[..], &["--identity", "replica-b"]].concat(),
        &[
            ("AZURE_CLIENT_ID", OUTSIDER_CLIENT),
            ("AZURE_CLIENT_SECRET", OUTSIDER_SECRET),
        ],
    );
    let name = endpoint_in(&emu, &ns, &[]);
    wait_for(&a, &ns, &name, READY, "Ready", is_ready);
    let lease: Value = serde_json::from_str(&kubectl_ok(&[
        "get", "lease", "fhirlock", "-n", &lease_ns, "-o", "json",
    ]))
    .unwrap();
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap().to_owned();
    let (leader_principal, standby_principal) = if holder == "replica-a" {
        (OPERATOR_OBJECT, outsider)
    } else {
        (outsider, OPERATOR_OBJECT)
    };
    assert!(writes_by(&emu, leader_principal) > 0);
    assert_eq!(
        writes_by(&emu, standby_principal),
        0,
        "the standby wrote to Azure"
    );

    // The leader dies; the other takes the Lease and corrects the next drift.
    let mut b = b;
    if holder == "replica-a" {
        a.kill()
    } else {
        b.kill()
    }
    let portal = emu.portal().unwrap();
    rt().block_on(portal.patch(
        &format!("{}/config/web", site()),
        WEB,
        &json!({"properties": {"ipSecurityRestrictionsDefaultAction": "Allow"}}),
    ))
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while writes_by(&emu, standby_principal) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never took over\n{}",
            if holder == "replica-a" {
                b.logs()
            } else {
                a.logs()
            }
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let lease: Value = serde_json::from_str(&kubectl_ok(&[
        "get", "lease", "fhirlock", "-n", &lease_ns, "-o", "json",
    ]))
    .unwrap();
    assert_ne!(lease["spec"]["holderIdentity"].as_str().unwrap(), holder);
    let cfg = rt()
        .block_on(portal.get(&format!("{}/config/web", site()), WEB))
        .unwrap()
        .unwrap();
    assert_eq!(
        cfg["properties"]["ipSecurityRestrictionsDefaultAction"],
        "Deny"
    );
}

#[test]
fn the_operator_works_with_only_the_rbac_in_deploy_and_can_do_nothing_more() {
    let _s = serial();
    let ns = namespace("e2e-rbac");
    let sys = namespace("fhirlock-system");
    let rbac = testenv::workspace_root().join("deploy/rbac");
    kubectl_ok(&["apply", "-n", &sys, "-f", rbac.to_str().unwrap()]);
    // Secrets and tokens: the tenant namespace's Role only.
    let tenant_rbac = rbac.join("tenant");
    kubectl_ok(&["apply", "-n", &ns, "-f", tenant_rbac.to_str().unwrap()]);
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    // A kubeconfig holding only the fhirlock ServiceAccount's token.
    let token = kubectl_ok(&["create", "token", "fhirlock", "-n", &sys, "--duration=1h"]);
    let admin = std::fs::read_to_string(plane().kubeconfig_path()).unwrap();
    let mut kc: Value = serde_yaml::from_str(&admin).unwrap();
    kc["users"] = json!([{"name": "fhirlock", "user": {"token": token.trim()}}]);
    kc["contexts"][0]["context"]["user"] = json!("fhirlock");
    let kc_path = emu.dir().join("fhirlock.kubeconfig");
    std::fs::write(&kc_path, serde_yaml::to_string(&kc).unwrap()).unwrap();

    let op = operator(
        &emu,
        &tenancy(emu.dir(), &[&ns], None),
        Some(&kc_path),
        &["--leader-election", "--lease-namespace", &sys],
    );
    let name = endpoint_in(&emu, &ns, &[]);
    wait_for(
        &op,
        &ns,
        &name,
        READY,
        "Ready under least privilege",
        is_ready,
    );
    assert!(
        !op.logs().contains("forbidden"),
        "the operator hit a forbidden call:\n{}",
        op.logs()
    );

    let sa = "system:serviceaccount:fhirlock-system:fhirlock";
    let can = |args: &[&str]| {
        let mut a = vec!["auth", "can-i", "--as", sa];
        a.extend_from_slice(args);
        text(&kubectl(&a).stdout).trim() == "yes"
    };
    assert!(can(&[
        "patch",
        "securedfhirendpoints.fhirlock.io",
        "--subresource=status",
        "-n",
        &ns
    ]));
    assert!(can(&[
        "create",
        "serviceaccounts",
        "--subresource=token",
        "-n",
        &ns
    ]));
    assert!(can(&["list", "secrets", "-n", &ns]));
    assert!(can(&[
        "update",
        "securedfhirendpoints.fhirlock.io",
        "--subresource=finalizers",
        "-n",
        &ns
    ]));
    for denied in [
        vec!["create", "pods", "-n", &ns],
        vec!["delete", "secrets", "-n", &ns],
        vec!["create", "secrets", "-n", &ns],
        vec!["update", "secrets", "-n", &ns],
        vec!["delete", "securedfhirendpoints.fhirlock.io", "-n", &ns],
        vec!["create", "securedfhirendpoints.fhirlock.io", "-n", &ns],
        vec!["create", "clusterrolebindings"],
        vec!["update", "leases", "-n", &ns],
        vec!["get", "configmaps", "-n", &ns],
        vec!["impersonate", "serviceaccounts"],
    ] {
        assert!(!can(&denied), "the operator may {denied:?}");
    }
}

#[test]
fn the_operator_stays_within_its_share_of_the_write_bucket_and_says_so() {
    let _s = serial();
    let ns = namespace("e2e-budget");
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    // A small write bucket: 6 writes, refilled at one every 20 s; converging takes 9. With a 50%
    // share fhirlock spends down to half of what it saw, then waits for the refill (told its rate,
    // as it knows Azure's) instead of running into 429s.
    let sizes = Throttle {
        reads: (250.0, 25.0),
        writes: (6.0, 0.05),
        deletes: (200.0, 10.0),
    };
    rt().block_on(emu.control.set_throttle(&sizes)).unwrap();
    let op = operator(
        &emu,
        &tenancy(emu.dir(), &[&ns], None),
        None,
        &[
            "--arm-budget-share",
            "0.5",
            "--arm-write-refill-per-second",
            "0.05",
        ],
    );
    let name = endpoint_in(&emu, &ns, &[]);
    wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(60),
        "writes deferred for the budget",
        |o| condition(o, "Reconciling").is_some_and(|c| c["reason"] == "Throttled"),
    );
    wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(180),
        "Ready as the bucket refills",
        is_ready,
    );
    let throttled = requests_by(&emu, OPERATOR_OBJECT, |e| e["status"] == 429);
    assert_eq!(
        throttled, 0,
        "fhirlock ran into ARM throttling instead of deferring"
    );
    let metrics = op.metrics().unwrap();
    let deferred = metrics
        .lines()
        .find(|l| l.starts_with("fhirlock_arm_deferred_writes_total{"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        deferred
            .split_whitespace()
            .last()
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
            > 0.0,
        "{deferred}"
    );
}

/// The Lease `fhirlock` in `ns`; `Null` before anyone created it.
fn lease(ns: &str) -> Value {
    let out = kubectl(&["get", "lease", "fhirlock", "-n", ns, "-o", "json"]);
    if !out.status.success() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

fn holder(lease: &Value) -> &str {
    lease["spec"]["holderIdentity"].as_str().unwrap_or("")
}

/// When the Lease's claim runs out by the system clock: its renewTime plus its duration.
fn lease_expiry(lease: &Value) -> SystemTime {
    let renewed = lease["spec"]["renewTime"].as_str().expect("renewTime");
    let secs = lease["spec"]["leaseDurationSeconds"].as_u64().unwrap();
    UNIX_EPOCH + Duration::from_secs_f64(unix_seconds(renewed)) + Duration::from_secs(secs)
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-30T02:10:11.123456Z`).
fn unix_seconds(t: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| -> i64 { t[r].parse().unwrap() };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (H. Hinnant): March-based years, so the leap day ends a year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let (h, min) = (n(11..13), n(14..16));
    let sec: f64 = t[17..].trim_end_matches('Z').parse().unwrap();
    (days * 86_400 + h * 3_600 + min * 60) as f64 + sec
}

fn signal(op: &Operator, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    let rc = unsafe { libc::kill(op.pid() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", op.pid());
}

/// The ARM requests the emulator has recorded (`GET /_emulator/requests`), oldest first.
pub(super) fn recorded(emu: &Emulator) -> Vec<Value> {
    let mut log = rt()
        .block_on(emu.control.call("GET", "/_emulator/requests", None))
        .unwrap();
    assert_eq!(log["dropped"], 0, "the request log overflowed");
    log["requests"]
        .take()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `(name, resourceVersion)` of every Event in `ns` that `instance` reported.
fn events_by(ns: &str, instance: &str) -> Vec<(String, String)> {
    let all: Value =
        serde_json::from_str(&kubectl_ok(&["get", "events", "-n", ns, "-o", "json"])).unwrap();
    let mut v: Vec<(String, String)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reportingInstance"] == instance)
        .map(|e| {
            let m = &e["metadata"];
            (m["name"].to_string(), m["resourceVersion"].to_string())
        })
        .collect();
    v.sort();
    v
}

fn resource_version(ns: &str, name: &str) -> String {
    kubectl_ok(&[
        "get",
        "sfe",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ])
}

fn default_action(portal: &fhirlock_arm::ArmClient) -> Value {
    let cfg = rt()
        .block_on(portal.get(&format!("{}/config/web", site()), WEB))
        .unwrap()
        .unwrap();
    cfg["properties"]["ipSecurityRestrictionsDefaultAction"].clone()
}

fn open_back_door(portal: &fhirlock_arm::ArmClient) {
    rt().block_on(portal.patch(
        &format!("{}/config/web", site()),
        WEB,
        &json!({"properties": {"ipSecurityRestrictionsDefaultAction": "Allow"}}),
    ))
    .unwrap();
}

fn until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A leader frozen (SIGSTOP) past its lease with a look at a back door in hand, while the standby
/// takes over and closes it, must not act on that look when it thaws: the one writer is whoever
/// holds the Lease now. The check is over the window in which the Lease still names the new
/// leader (killed just before the thaw, so it writes nothing either): any Azure write or
/// endpoint write in it is the old leader's. Before the gate asked the Lease before every write,
/// the thawed pass went on to PATCH config/web and write status.
#[test]
fn a_leader_frozen_past_its_lease_writes_nothing_when_it_thaws() {
    let _s = serial();
    let ns = namespace("e2e-one-writer");
    let lease_ns = namespace("e2e-one-writer-lease");
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let subscription = format!("/subscriptions/{SUBSCRIPTION}");
    rt().block_on(
        emu.control
            .assign_role(OUTSIDER_OBJECT, &subscription, &["*"]),
    )
    .unwrap();
    let cfg = tenancy(emu.dir(), &[&ns], None);
    let le = ["--leader-election", "--lease-namespace", lease_ns.as_str()];
    // a starts alone, so it leads; b acts as another principal, so the emulator tells their Azure
    // requests apart.
    let a = operator(
        &emu,
        &cfg,
        None,
        &[&le[..], &["--identity", "replica-a"]].concat(),
    );
    until(
        Duration::from_secs(60),
        "replica-a to hold the Lease",
        || holder(&lease(&lease_ns)) == "replica-a",
        || a.logs(),
    );
    let mut b = operator_with_env(
        &emu,
        &cfg,
        &[&le[..], &["--identity", "replica-b"]].concat(),
        &[
            ("AZURE_CLIENT_ID", OUTSIDER_CLIENT),
            ("AZURE_CLIENT_SECRET", OUTSIDER_SECRET),
        ],
    );
    rt().block_on(b.wait_ready(Duration::from_secs(60)))
        .unwrap();
    let name = endpoint_in(&emu, &ns, &[]);
    wait_for(&a, &ns, &name, READY, "Ready, by replica-a", is_ready);
    assert_eq!(writes_by(&emu, OUTSIDER_OBJECT), 0, "the standby wrote");

    // A back door; a's next look at it (resync every 3 s) is held on the wire, ARM answering its
    // config/web GET 5 s late, and a is frozen meanwhile: it thaws with a stale look in hand.
    let portal = emu.portal().unwrap();
    let mut attempts = 0;
    loop {
        attempts += 1;
        open_back_door(&portal);
        rt().block_on(emu.control.faults(json!({"method": "GET", "path": "*/sites/fhir-server/config/web", "count": 1, "latencyMs": 5000})))
            .unwrap();
        until(
            Duration::from_secs(30),
            "replica-a's next look at config/web",
            || {
                let f = rt().block_on(emu.control.pending_faults()).unwrap();
                f.as_array()
                    .is_none_or(|f| f.iter().all(|r| r["count"] == 0))
            },
            || a.logs(),
        );
        signal(&a, libc::SIGSTOP);
        // a could have closed the door between its opening and the fault: then its look saw
        // nothing to do. Nobody else writes, so the door still open means its look saw it.
        if default_action(&portal) == "Allow" {
            break;
        }
        assert!(attempts < 3, "replica-a closed the door before every look");
        signal(&a, libc::SIGCONT);
    }
    let frozen = Instant::now();

    // b takes the Lease once a's runs out and closes the door, as itself. A change to the
    // endpoint makes it look at once instead of at its next requeue.
    let mut pokes = 0;
    until(
        Duration::from_secs(40),
        "replica-b to take over and close the door",
        || {
            if default_action(&portal) == "Deny" {
                return true;
            }
            if holder(&lease(&lease_ns)) == "replica-b" {
                pokes += 1;
                let poke = format!("e2e.fhirlock.io/poke={pokes}");
                kubectl_ok(&["annotate", "sfe", &name, "-n", &ns, &poke, "--overwrite"]);
                std::thread::sleep(Duration::from_millis(900));
            }
            false
        },
        || b.logs(),
    );
    assert!(writes_by(&emu, OUTSIDER_OBJECT) > 0);
    wait_for(
        &b,
        &ns,
        &name,
        Duration::from_secs(20),
        "replica-b's status: the drift it corrected",
        |o| {
            o["status"]["lastDrift"]["fields"]
                .to_string()
                .contains("ipSecurityRestrictionsDefaultAction")
        },
    );

    // b dies right after a renewal, so the Lease stays b's for most of its duration; in that
    // window only a runs, and every write is a's.
    let mut expiry = lease_expiry(&lease(&lease_ns));
    until(
        Duration::from_secs(15),
        "a fresh renewal by replica-b",
        || {
            let l = lease(&lease_ns);
            assert_eq!(holder(&l), "replica-b");
            expiry = lease_expiry(&l);
            expiry > SystemTime::now() + Duration::from_secs(8)
        },
        || b.logs(),
    );
    b.kill();
    let rv = resource_version(&ns, &name);
    let events = events_by(&ns, "replica-a");
    let seen = recorded(&emu)
        .last()
        .map_or(0, |r| r["seq"].as_u64().unwrap());
    // The thaw comes well within the read timeout of a's held GET (60 s): a must act on its
    // answer, not give up on it.
    assert!(
        frozen.elapsed() < Duration::from_secs(50),
        "{:?}",
        frozen.elapsed()
    );
    signal(&a, libc::SIGCONT);
    let window_end = expiry - Duration::from_millis(500);
    let mut watched = Duration::ZERO;
    while let Ok(left) = window_end.duration_since(SystemTime::now()) {
        std::thread::sleep(left.min(Duration::from_millis(250)));
        watched += left.min(Duration::from_millis(250));
    }
    let written: Vec<Value> = recorded(&emu)
        .into_iter()
        .filter(|r| r["seq"].as_u64().unwrap() > seen)
        .filter(|r| r["principal"] == OPERATOR_OBJECT && r["method"] != "GET")
        .collect();
    assert!(
        written.is_empty(),
        "the old leader wrote to Azure after it thawed: {written:#?}\n{}",
        tail(&a.logs(), 40)
    );
    assert_eq!(
        resource_version(&ns, &name),
        rv,
        "the old leader wrote the endpoint after it thawed\n{}",
        tail(&a.logs(), 40)
    );
    assert_eq!(
        events_by(&ns, "replica-a"),
        events,
        "the old leader published Events after it thawed"
    );
    let l = lease(&lease_ns);
    assert_eq!(holder(&l), "replica-b", "{l}");
    eprintln!("watched the thawed leader for {watched:?}");

    // Once b's claim has run out, a leads again, and acts.
    until(
        Duration::from_secs(30),
        "replica-a to lead again",
        || holder(&lease(&lease_ns)) == "replica-a",
        || a.logs(),
    );
    open_back_door(&portal);
    until(
        Duration::from_secs(30),
        "replica-a to close the door again",
        || default_action(&portal) == "Deny",
        || a.logs(),
    );
}
