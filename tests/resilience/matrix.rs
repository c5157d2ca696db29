//! Faults in every phase of the lifecycle (create, drift, update, delete).

use super::*;

/// One lifecycle (create, drift, update, delete) with faults injected in every phase.
fn lifecycle<'a>(
    plane: &'a ControlPlane,
    trial: &str,
    n: usize,
    only: Option<Kind>,
) -> Scenario<'a> {
    // Twice in soak: a second 401 or dropped GET defeats the client's one immediate re-send, so
    // the reconcile itself fails (and backs off: 120 s for an auth failure while deleting).
    let count = if soak() { 2 } else { 1 };
    let mut s = Scenario::new(plane, &format!("res-faults-{trial}"), n, 0.01);
    let eps = s.eps.clone();
    for ep in &eps {
        s.plant_oob(*ep);
    }
    s.start_operator();
    // Soak piles up to 16 faults per endpoint and phase; consecutive transient failures back an
    // endpoint off exponentially (up to 300 s), so its waits allow for a full backoff.
    let budget = Duration::from_secs(if soak() { 720 } else { 150 });

    // Create.
    for ep in &eps {
        s.inject(Phase::Create.rules(*ep, only, count));
    }
    s.apply_all("Delete");
    s.wait_ready("Ready through the create faults", budget);
    let injected = s.settle_faults();
    assert!(injected > 0, "no fault was injected while creating");
    for ep in &eps {
        s.plant_oob_on_created(*ep);
    }
    s.wait_ready("Ready after the out-of-band writes", budget);
    s.check_converged(&format!("{trial} create"));

    // Drift: a person reopens back doors; the corrections meet faults.
    for ep in &eps {
        let id = ep.subnet_id(&ep.agw_subnet());
        let mut sn = s.portal.get(&id, NET).unwrap();
        sn["properties"]["serviceEndpoints"] = json!([]);
        s.portal.write("PUT", &id, NET, &sn);
        s.portal.write(
            "PATCH",
            &ep.cosmos(),
            COSMOS,
            &json!({"properties": {"ipRules": [{"ipAddressOrRange": "203.0.113.7"}]}}),
        );
        s.portal.write(
            "PATCH",
            &format!("{}/config/web", ep.site()),
            WEB,
            &json!({"properties": {"ipSecurityRestrictionsDefaultAction": "Allow"}}),
        );
        s.inject(Phase::Drift.rules(*ep, only, count));
    }
    s.wait("the drift corrected", budget, |s| {
        eps.iter().all(|ep| {
            let cfg = s
                .portal
                .get(&format!("{}/config/web", ep.site()), WEB)
                .unwrap();
            let cosmos = s.portal.get(&ep.cosmos(), COSMOS).unwrap();
            let sn = s.portal.get(&ep.subnet_id(&ep.agw_subnet()), NET).unwrap();
            cfg["properties"]["ipSecurityRestrictionsDefaultAction"] == "Deny"
                && cosmos["properties"]["ipRules"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
                && sn["properties"]["serviceEndpoints"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|x| x["service"] == "Microsoft.Web"))
        })
    });
    s.wait_ready("Ready after the drift", budget);
    s.settle_faults();
    s.check_converged(&format!("{trial} drift"));

    // Update: a spec change that rewrites each gateway.
    for ep in &eps {
        s.inject(Phase::Update.rules(*ep, only, count));
    }
    for ep in &eps {
        let mut m = ep.manifest(&s.ns, "Delete");
        m["spec"]["gateway"]["sku"]["maxCapacity"] = json!(4);
        m["spec"]["gateway"]["probePath"] = json!("/health");
        s.cluster.apply_ok(&m, s.emu.dir()).unwrap();
    }
    s.wait("the gateways updated", budget, |s| {
        eps.iter().all(|ep| {
            let gw = s.portal.get(&ep.gateway(), NET).unwrap();
            gw["properties"]["autoscaleConfiguration"]["maxCapacity"] == 4
                && gw["properties"]["provisioningState"] == "Succeeded"
        })
    });
    s.wait_ready("Ready after the update", budget);
    let injected = s.settle_faults();
    assert!(injected > 0, "no fault was injected while updating");
    s.check_converged(&format!("{trial} update"));

    // Delete (deletionPolicy Delete): fhirlock removes what it created, and only that.
    for ep in &eps {
        s.inject(Phase::Delete.rules(*ep, only, count));
    }
    for ep in &eps {
        s.cluster
            .ok(&["delete", "sfe", &ep.name(), "-n", &s.ns, "--wait=false"])
            .unwrap();
    }
    s.wait("the endpoints deleted", budget, |s| {
        eps.iter()
            .all(|ep| s.cluster.endpoint_gone(&s.ns, &ep.name()))
    });
    let injected = s.settle_faults();
    assert!(injected > 0, "no fault was injected while deleting");
    s.check_no_duplicates(&[]);
    s.check_oob();
    for ep in &eps {
        let site = s.portal.get(&ep.site(), WEB).expect("the site stays");
        assert!(site["properties"]["virtualNetworkSubnetId"].is_null());
        let cfg = s
            .portal
            .get(&format!("{}/config/web", ep.site()), WEB)
            .unwrap();
        assert_eq!(
            cfg["properties"]["ipSecurityRestrictionsDefaultAction"], "Deny",
            "deleting reopened the site"
        );
    }
    s.check_rate(&format!("{trial} delete"));
    s
}

#[test]
fn the_fault_matrix_across_the_lifecycle_ends_converged_without_duplicates_or_lost_fields() {
    let _s = serial();
    let plane = plane();
    let trials: Vec<(String, usize, Option<Kind>)> = if soak() {
        let mut v = vec![("mixed".to_owned(), 2, None)];
        v.extend(KINDS.iter().map(|k| (k.name().to_owned(), 1, Some(*k))));
        v
    } else {
        vec![("mixed".to_owned(), 1, None)]
    };
    let mut total: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (name, n, only) in &trials {
        let s = lifecycle(plane, name, *n, *only);
        for (k, v) in &s.injected {
            *total.entry(k).or_default() += v;
        }
        if let Some(k) = only {
            assert!(
                s.injected.get(k.name()).copied().unwrap_or(0) > 0,
                "trial {name}: no {} fault was injected",
                k.name()
            );
        }
    }
    for k in KINDS {
        assert!(
            total.get(k.name()).copied().unwrap_or(0) > 0,
            "no {} fault was injected: {total:?}",
            k.name()
        );
    }
    eprintln!(
        "resilience: fault matrix: {} trial(s) x 4 phases; faults injected {total:?} (total {}); worst {:.0} requests/min per endpoint",
        trials.len(),
        total.values().sum::<u64>(),
        *WORST_RPM.lock().unwrap()
    );
}
