//! The operator as deployed: two replicas with a Lease, the RBAC in `deploy/`, and its share of
//! ARM's write bucket.

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
