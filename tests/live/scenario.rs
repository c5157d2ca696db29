//! The live scenario, step by step: a throwaway resource group, a wide-open estate, an endpoint
//! made Ready, three back doors planted out of band and closed, the endpoint deleted, nothing of
//! fhirlock's left, the group deleted.

use super::*;

pub fn run(t: Target) {
    let rt = rt();
    let group = unique_name();
    eprintln!("live[{}]: resource group {group}", t.name);
    // Dropped before `t` (the emulator) and after the operator: deletes the group on failure.
    let mut guard = GroupGuard::create(&t, &rt, &group);
    let estate = Estate::new(&t, &group);
    estate.create(&t, &rt);
    assert!(
        !open_doors(&t, &rt, &estate).is_empty(),
        "the estate starts wide open"
    );

    let ns = namespace(&format!("live-{}", t.name));
    must(Cluster::new(plane()).tls_secret(&ns, "live-tls", HOST, &t.dir));
    let op = start_operator(&t, &ns, &guard.id);
    let file = t.dir.join("sfe-live.yaml");
    std::fs::write(
        &file,
        serde_yaml::to_string(&estate.endpoint(&t, &ns)).unwrap(),
    )
    .unwrap();
    kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    wait_for(&op, &ns, "live", t.timeouts.ready, "Ready", is_ready);
    wait_closed(&t, &rt, &estate, &op, "locked down once Ready");

    plant_back_doors(&t, &rt, &estate);
    wait_closed(&t, &rt, &estate, &op, "the back doors closed");
    // Azure is closed a moment before fhirlock reports it.
    let fields = [
        "ipSecurityRestrictions",
        "scmIpSecurityRestrictionsUseMain",
        "ipRules",
    ];
    let mut ev = String::new();
    let reported = poll_until(Duration::from_secs(60), || {
        ev = events(&ns);
        ev.contains("DriftCorrected") && fields.iter().all(|f| ev.contains(f))
    });
    assert!(
        reported,
        "a DriftCorrected Event for each of {fields:?}:\n{ev}"
    );
    wait_for(&op, &ns, "live", t.timeouts.ready, "Ready again", is_ready);

    kubectl_ok(&["delete", "sfe", "live", "-n", &ns, "--wait=false"]);
    wait_until(t.timeouts.deleted, "the endpoint's cleanup", &op, || {
        Cluster::new(plane()).endpoint_gone(&ns, "live")
    });
    let left = leftovers(&t, &rt, &estate);
    assert!(left.is_empty(), "left behind after deletion: {left:#?}");
    assert!(
        events(&ns).contains("Deleted"),
        "no Deleted Event:\n{}",
        events(&ns)
    );
    drop(op);

    write(
        &rt,
        &t.owner,
        "DELETE",
        &guard.id,
        RESOURCES_API,
        &Value::Null,
        t.timeouts.group_gone,
    );
    assert!(
        read(&rt, &t.owner, &guard.id, RESOURCES_API).is_none(),
        "{} still exists",
        guard.id
    );
    guard.disarm();
    if let Some(emu) = &t.emulator {
        check_owner_bodies(emu);
    }
}

fn start_operator(t: &Target, ns: &str, group: &str) -> Operator {
    let tenancy = t.dir.join("tenancy.yaml");
    let cfg =
        json!({"tenants": [{"namespace": ns, "scopes": [group], "identity": {"operator": {}}}]});
    std::fs::write(&tenancy, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let kubeconfig = plane().kubeconfig_path();
    let resync = t.resync_seconds.to_string();
    must(Operator::start_in(
        &t.dir,
        t.operator_env.clone(),
        OperatorOptions {
            program: bin("fhirlock"),
            config: &tenancy,
            kubeconfig: &kubeconfig,
            args: ["--log-format", "text", "--resync-seconds", &resync]
                .map(String::from)
                .to_vec(),
            env: vec![("RUST_LOG".into(), "info,fhirlock=debug".into())],
        },
    ))
}

/// Three back doors, opened by a person in the portal: an `Allow` rule for every address on
/// the site, its SCM site opened to everyone, and a public IP rule on Cosmos DB.
fn plant_back_doors(t: &Target, rt: &Runtime, e: &Estate) {
    let config = format!("{}/config/web", e.site);
    let current = read(rt, &t.portal, &config, WEB).expect("config/web");
    let mut rules: Vec<Value> = real_rules(&current["properties"]["ipSecurityRestrictions"]);
    rules.push(
        json!({"name": "back-door", "ipAddress": "0.0.0.0/0", "action": "Allow", "priority": 50}),
    );
    let after = write(
        rt,
        &t.portal,
        "PATCH",
        &config,
        WEB,
        &json!({"properties": {"ipSecurityRestrictions": rules}}),
        t.timeouts.write,
    );
    assert!(
        after.is_some_and(|a| a.to_string().contains("back-door")),
        "the site's back door was not stored"
    );
    write(
        rt,
        &t.portal,
        "PATCH",
        &config,
        WEB,
        &json!({"properties": {"scmIpSecurityRestrictionsUseMain": false, "scmIpSecurityRestrictionsDefaultAction": "Allow"}}),
        t.timeouts.write,
    );
    write(
        rt,
        &t.portal,
        "PATCH",
        &e.cosmos,
        COSMOS,
        &json!({"properties": {"ipRules": [{"ipAddressOrRange": "203.0.113.7"}]}}),
        t.timeouts.write,
    );
}

/// Access-restriction rules as written (the synthetic `Allow all` / `Deny all` at priority
/// 2147483647 that App Service adds on read are not rules anyone wrote).
fn real_rules(v: &Value) -> Vec<Value> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["priority"].as_i64() != Some(2_147_483_647))
        .cloned()
        .collect()
}

/// Every way in besides the gateway, as Azure's resources read (on every target), and as the
/// emulator's exposure oracle judges it (there).
fn open_doors(t: &Target, rt: &Runtime, e: &Estate) -> Vec<String> {
    let mut open = Vec::new();
    let cfg = read(rt, &t.owner, &format!("{}/config/web", e.site), WEB).expect("config/web");
    let p = &cfg["properties"];
    if p["ipSecurityRestrictionsDefaultAction"] != "Deny" {
        open.push("site: default action is not Deny".into());
    }
    for r in real_rules(&p["ipSecurityRestrictions"]) {
        let gateway_only = r["vnetSubnetResourceId"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(&e.agw_subnet))
            && r["ipAddress"].is_null();
        if r["action"] == "Allow" && !gateway_only {
            open.push(format!("site: rule {r}"));
        }
    }
    if p["scmIpSecurityRestrictionsUseMain"] != true
        || p["scmIpSecurityRestrictionsDefaultAction"] != "Deny"
    {
        open.push("SCM site: not locked like the main site".into());
    }
    let acct = read(rt, &t.owner, &e.cosmos, COSMOS).expect("Cosmos DB account");
    let c = &acct["properties"];
    if c["ipRules"].as_array().is_some_and(|r| !r.is_empty()) {
        open.push(format!("Cosmos DB: IP rules {}", c["ipRules"]));
    }
    let vnet_rules: Vec<&str> = c["virtualNetworkRules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
        .collect();
    if !(vnet_rules.len() == 1 && vnet_rules[0].eq_ignore_ascii_case(&e.int_subnet)) {
        open.push(format!("Cosmos DB: VNet rules {vnet_rules:?}"));
    }
    if c["isVirtualNetworkFilterEnabled"] != true || c["networkAclBypass"] != "None" {
        open.push("Cosmos DB: filter off or Azure services bypass it".into());
    }
    if let Some(emu) = &t.emulator {
        let x = rt.block_on(emu.control.exposure()).unwrap();
        for part in ["main", "scm"] {
            let s = &x["sites"][&e.site][part];
            if s["internetDirect"] != false || s["internetViaGateway"] != false {
                open.push(format!("oracle: site {part} {s}"));
            }
        }
        let d = &x["cosmos"][&e.cosmos]["dataPlane"];
        if d["internetDirect"] != false {
            open.push(format!("oracle: Cosmos DB {d}"));
        }
    }
    open
}

fn wait_closed(t: &Target, rt: &Runtime, e: &Estate, op: &Operator, what: &str) {
    let mut last = Vec::new();
    let ok = poll_until(t.timeouts.closed, || {
        last = open_doors(t, rt, e);
        last.is_empty()
    });
    assert!(
        ok,
        "{what}: still open: {last:#?}\noperator log tail:\n{}",
        tail(&op.logs(), 40)
    );
}

/// What fhirlock created or added and must have removed: the gateway, its two subnets, the
/// site's access rule and VNet integration, the Cosmos VNet rule; and, in the group's resource
/// list, nothing but the four resources the run made. What it closed stays closed.
fn leftovers(t: &Target, rt: &Runtime, e: &Estate) -> Vec<String> {
    let mut left = Vec::new();
    if read(rt, &t.owner, &e.gateway, NET).is_some() {
        left.push(format!("gateway {}", e.gateway));
    }
    let subnets = read(rt, &t.owner, &format!("{}/subnets", e.vnet), NET).unwrap_or_default();
    for s in subnets["value"].as_array().into_iter().flatten() {
        left.push(format!("subnet {}", s["id"]));
    }
    let cfg = read(rt, &t.owner, &format!("{}/config/web", e.site), WEB).expect("config/web");
    for r in real_rules(&cfg["properties"]["ipSecurityRestrictions"]) {
        left.push(format!("access rule {r}"));
    }
    if cfg["properties"]["ipSecurityRestrictionsDefaultAction"] != "Deny" {
        left.push("the site was re-opened".into());
    }
    let site = read(rt, &t.owner, &e.site, WEB).expect("site");
    if site["properties"]["virtualNetworkSubnetId"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        left.push(format!(
            "VNet integration {}",
            site["properties"]["virtualNetworkSubnetId"]
        ));
    }
    let acct = read(rt, &t.owner, &e.cosmos, COSMOS).expect("Cosmos DB account");
    if acct["properties"]["virtualNetworkRules"]
        .as_array()
        .is_some_and(|r| !r.is_empty())
    {
        left.push(format!(
            "Cosmos VNet rules {}",
            acct["properties"]["virtualNetworkRules"]
        ));
    }
    if acct["properties"]["isVirtualNetworkFilterEnabled"] != true {
        left.push("Cosmos DB was re-opened".into());
    }
    let listed = read(
        rt,
        &t.owner,
        &format!("{}/resources", t.group_id(&e.group)),
        RESOURCES_API,
    )
    .expect("the group's resources");
    assert!(
        listed.get("nextLink").is_none_or(Value::is_null),
        "{listed}"
    );
    let ours = [&e.vnet, &e.plan, &e.site, &e.cosmos];
    for r in listed["value"].as_array().into_iter().flatten() {
        let id = r["id"].as_str().unwrap_or_default();
        if !ours.iter().any(|o| o.eq_ignore_ascii_case(id)) {
            left.push(format!("resource {id}"));
        }
    }
    let counted = listed["value"].as_array().map_or(0, Vec::len);
    if counted < ours.len() {
        left.push(format!(
            "the group lists {counted} resources, not the run's 4: {listed}"
        ));
    }
    left
}

/// The estate's and the back doors' bodies (the owner's principal) held to Microsoft's models,
/// as the operator's are when the emulator is dropped.
fn check_owner_bodies(emu: &Emulator) {
    let script = testenv::workspace_root().join("tests/emulator-conformance/check-bodies.sh");
    let out = std::process::Command::new(&script)
        .args(["--url", &emu.ready.arm_endpoint, "--ca"])
        .arg(&emu.ready.ca_path)
        .args(["--principal", PORTAL_OBJECT])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the live estate's bodies break Microsoft's models:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn events(ns: &str) -> String {
    kubectl_ok(&[
        "get",
        "events",
        "-n",
        ns,
        "-o",
        "custom-columns=REASON:.reason,NOTE:.note,MESSAGE:.message",
    ])
}

fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500).max(timeout / 200));
    }
}

fn wait_until(timeout: Duration, what: &str, op: &Operator, done: impl FnMut() -> bool) {
    assert!(
        poll_until(timeout, done),
        "timed out waiting for {what}\noperator log tail:\n{}",
        tail(&op.logs(), 40)
    );
}
