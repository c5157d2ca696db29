//! Property and fuzz tests of the core over generated specs (only those admission accepts, checked
//! with `fhirlock_api::admission::validate`) and generated or mutated observed states:
//!
//! * `preflight`, `posture`, `plan` and `teardown` never panic, whatever Azure returns;
//! * converge: for every admissible spec whose pre-flight passes on the wide-open estate, running
//!   the plan (with the simulator) ends in a state where re-planning gives nothing and only
//!   advisory findings remain;
//! * `model::parse` never panics on mutated real-shaped bodies (truncated, types flipped, keys
//!   dropped or added, huge numbers, unicode), and what parses serializes back.
//!
//! Cases: proptest's defaults here; `FHIRLOCK_SOAK=1` (`make soak`) runs 20 times as many.

mod common;

use common::*;
use fhirlock_core::{Desired, Observed, model, plan, posture, preflight, simulate};
use proptest::prelude::*;
use serde_json::{Value, json};

fn cases(quick: u32) -> u32 {
    if std::env::var("FHIRLOCK_SOAK").is_ok_and(|v| v == "1") {
        quick * 20
    } else {
        quick
    }
}

/// A spec varied within (and around) what admission allows; inadmissible ones are discarded.
fn spec() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec!["snet-fhir-agw", "agw", "a", "snet.fhir_agw-2", "9bad"]);
    let a = (
        names.clone(),
        (1u8..=255, 24u8..=29),
        names,
        (1u8..=255, 24u8..=29),
        prop_oneof![4 => 4u8..=60, 1 => 0u8..=255],
        prop::sample::select(vec!["LockedLikeMain", "LockedDenyAll"]),
        prop::sample::select(vec!["Standard_v2", "WAF_v2"]),
        (0i32..4, 1i32..12),
    );
    let b = (
        prop::sample::select(vec![
            "fhir.trust.nhs.uk",
            "a.b.c",
            "FHIR.trust.nhs.uk",
            "fhir",
            "x-1.nhs.uk",
        ]),
        prop::sample::select(vec!["Enforce", "Audit"]),
        prop::sample::select(vec!["Retain", "Delete"]),
        prop::sample::select(vec!["AppGwSslPolicy20220101", "AppGwSslPolicy20220101S"]),
        prop::sample::select(vec!["/metadata", "/", "/health/ready", "metadata"]),
        prop::sample::select(vec!["agw-fhir", "agw", "a_b.c-1"]),
        prop::sample::select(vec!["uksouth", "ukwest"]),
        prop::sample::select(vec!["fhir", "hscn-net", "other-rg"]),
    );
    (a, b).prop_map(
        |(
            (gw_name, (gw3, gw_mask), int_name, (int3, int_mask), ip4, scm, tier, (min, max)),
            (host, mode, policy, ssl, probe, gname, loc, rg),
        )| {
            let mut o = fhirlock_api::fixtures::base_example();
            let s = &mut o["spec"];
            s["network"]["gatewaySubnet"] =
                json!({"name": gw_name, "addressPrefix": format!("10.20.{gw3}.0/{gw_mask}")});
            s["network"]["integrationSubnet"] =
                json!({"name": int_name, "addressPrefix": format!("10.20.{int3}.0/{int_mask}")});
            s["appService"]["scmSite"] = json!(scm);
            s["gateway"]["sku"] = json!({"tier": tier, "minCapacity": min, "maxCapacity": max});
            s["gateway"]["privateIPAddress"] = json!(format!("10.20.{gw3}.{ip4}"));
            s["gateway"]["hostName"] = json!(host);
            s["gateway"]["sslPolicy"] = json!(ssl);
            s["gateway"]["probePath"] = json!(probe);
            s["gateway"]["name"] = json!(gname);
            s["gateway"]["location"] = json!(loc);
            s["gateway"]["resourceGroup"] = json!(rg);
            s["mode"] = json!(mode);
            s["deletionPolicy"] = json!(policy);
            o
        },
    )
}

/// A replacement of any JSON type, including the awkward ones.
fn weird(pick: u64) -> Value {
    match pick % 12 {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(1e308),
        5 => json!(-0.0),
        6 => json!(""),
        7 => json!("Succeeded\u{0}\u{202e}ñ😀"),
        8 => json!([]),
        9 => json!({}),
        10 => json!("10.20.0.0/33"),
        _ => json!([{"id": "/subscriptions//", "properties": null}]),
    }
}

/// One mutation somewhere in `v`, steered by `path` (a sequence of choices).
fn mutate(v: &mut Value, path: &[u64]) {
    let Some((&c, rest)) = path.split_first() else {
        *v = weird(0);
        return;
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = keys[(c as usize / 4) % keys.len()].clone();
            match c % 4 {
                0 => *m.get_mut(&k).unwrap() = weird(c / 7),
                1 => {
                    m.remove(&k);
                }
                2 => {
                    m.insert(format!("{k}-dup"), weird(c / 7));
                }
                _ => mutate(m.get_mut(&k).unwrap(), rest),
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = (c as usize / 2) % a.len();
            if c % 2 == 0 {
                a[i] = weird(c / 5);
            } else {
                mutate(&mut a[i], rest);
            }
        }
        _ => *v = weird(c),
    }
}

/// An observed state: the wide-open estate or a converged one, with resources missing and
/// bodies mutated.
fn observed(d: &Desired, converged: bool, missing: u8, mutations: &[(u8, Vec<u64>)]) -> Observed {
    let mut o = wide_open();
    if converged
        && preflight::check(d, &o).is_empty()
        && let Ok(end) = try_converge(d, &o)
    {
        o = end;
    }
    for i in 0..6 {
        if missing & (1 << i) != 0 {
            *slot(&mut o, i) = None;
        }
    }
    for (which, path) in mutations {
        if let Some(v) = slot(&mut o, *which as usize % 6).as_mut() {
            mutate(v, path);
        }
    }
    if missing & 64 != 0 {
        o.isolation_feature = Some("NotRegistered".into());
    }
    o
}

fn slot(o: &mut Observed, i: usize) -> &mut Option<Value> {
    match i {
        0 => &mut o.vnet,
        1 => &mut o.gateway,
        2 => &mut o.site,
        3 => &mut o.site_config,
        4 => &mut o.server_farm,
        _ => &mut o.cosmos,
    }
}

/// The plan run to completion with the simulator, as the controller does (simulated time
/// included); `Err` when it gets stuck or does not finish.
fn try_converge(d: &Desired, start: &Observed) -> Result<Observed, String> {
    converge_timed(d, start).map(|(end, _, _)| end)
}

fn admissible(obj: &Value) -> bool {
    fhirlock_api::admission::validate(obj, None).is_empty()
}

proptest! {
    // Admission (the CRD's CEL rules) takes ~50 ms a spec in a debug build, so few cases here.
    #![proptest_config(ProptestConfig { cases: cases(24), max_global_rejects: 100_000, ..ProptestConfig::default() })]

    #[test]
    fn admissible_specs_converge_on_the_wide_open_estate(obj in spec()) {
        prop_assume!(admissible(&obj));
        let d = desired_of(&obj);
        let start = wide_open();
        let pre = preflight::check(&d, &start);
        // Pre-flight is the gate: whatever it lets through must converge.
        prop_assume!(pre.is_empty());
        let end = try_converge(&d, &start).map_err(|e| TestCaseError::fail(format!("{e} for {}", obj["spec"])))?;
        prop_assert!(plan::plan(&d, &end).is_empty());
        prop_assert_eq!(preflight::check(&d, &end), vec![]);
        let blocking: Vec<_> = posture::findings(&d, &end)
            .into_iter()
            .filter(|f| f.severity != posture::Severity::Advisory)
            .map(|f| f.code)
            .collect();
        prop_assert!(blocking.is_empty(), "left {:?} for {}", blocking, obj["spec"]);
    }

    #[test]
    fn the_core_never_panics_on_any_observed_state(
        obj in spec(),
        converged in any::<bool>(),
        missing in any::<u8>(),
        mutations in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u64>(), 0..6)), 0..6),
    ) {
        prop_assume!(admissible(&obj));
        let d = desired_of(&obj);
        let o = observed(&d, converged, missing, &mutations);
        let pre = preflight::check(&d, &o);
        let _ = posture::findings(&d, &o);
        let _ = posture::exposure(&o);
        let p = plan::plan(&d, &o);
        for s in p.steps.iter().filter(|s| s.ready()) {
            prop_assert!(!s.resource_id.is_empty());
            prop_assert!(s.method == plan::Method::Delete || s.body.is_object(), "{:?} writes {}", s.kind, s.body);
            // What pre-flight admits, the simulator (ARM's read-modify-write) can apply.
            if pre.is_empty() {
                let _ = simulate::apply(&o, s);
            }
        }
        let created = vec![d.gateway.id.clone(), d.gateway_subnet.id.clone(), d.integration_subnet.id.clone()];
        let t = plan::teardown(&d, &o, &created);
        // Teardown never deletes what fhirlock does not create.
        for s in &t.steps {
            if s.method == plan::Method::Delete {
                prop_assert!(
                    created.contains(&s.resource_id) || s.resource_id.ends_with("/networkConfig/virtualNetwork"),
                    "teardown deletes {}", s.resource_id
                );
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    #[test]
    fn model_parse_never_panics_on_mutated_bodies(
        which in 0usize..6,
        mutations in prop::collection::vec(prop::collection::vec(any::<u64>(), 0..6), 1..5),
        cut in any::<u16>(),
        truncate in any::<bool>(),
    ) {
        let o = wide_open();
        let converged = try_converge(&common::desired(), &o).unwrap();
        let mut body = [
            o.vnet.clone().unwrap(),
            o.site.clone().unwrap(),
            o.site_config.clone().unwrap(),
            o.cosmos.clone().unwrap(),
            converged.gateway.clone().unwrap(),
            converged.subnet_json("snet-fhir-agw").unwrap(),
        ][which].clone();
        for m in &mutations {
            mutate(&mut body, m);
        }
        if truncate {
            // A truncated body does not parse as JSON at all; the edge (serde_json) says so.
            let text = body.to_string();
            let cut = (cut as usize) % (text.len() + 1);
            let mut end = cut;
            while !text.is_char_boundary(end) { end -= 1; }
            if let Ok(v) = serde_json::from_str::<Value>(&text[..end]) {
                body = v;
            }
        }
        fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) {
            if let Ok(t) = model::parse::<T>(v) {
                let _ = model::to_json(&t);
            }
        }
        round_trip::<model::VirtualNetwork>(&body);
        round_trip::<model::Subnet>(&body);
        round_trip::<model::Site>(&body);
        round_trip::<model::SiteConfig>(&body);
        round_trip::<model::CosmosAccount>(&body);
        round_trip::<model::ApplicationGateway>(&body);
        round_trip::<model::ServerFarm>(&body);
        // And the typed accessors the planner uses, on an Observed holding the mutated body.
        let mut ob = o.clone();
        match which {
            0 | 5 => ob.vnet = Some(body),
            1 => ob.site = Some(body),
            2 => ob.site_config = Some(body),
            3 => ob.cosmos = Some(body),
            _ => ob.gateway = Some(body),
        }
        let _ = (ob.vnet(), ob.subnets(), ob.site(), ob.site_config(), ob.cosmos(), ob.gateway());
        let _ = plan::plan(&common::desired(), &ob);
    }
}

/// The JSON pointer of every array entry in `v` (where a model expects objects, mostly).
fn array_entries(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                array_entries(x, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                out.push(format!("{at}/{i}"));
                array_entries(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Values that are not objects, the awkward numbers included.
fn not_an_object(pick: usize) -> Value {
    [
        Value::Null,
        json!(42),
        json!(1e19),
        json!("virtualNetworkRule"),
        json!([]),
        json!(true),
    ][pick % 6]
        .clone()
}

/// The five resources fhirlock models, by index: the body in `o` and its ARM ID.
fn modelled<'a>(o: &'a mut Observed, d: &Desired, i: usize) -> (&'a mut Option<Value>, String) {
    match i % 5 {
        0 => (&mut o.vnet, d.vnet_id.clone()),
        1 => (&mut o.gateway, d.gateway.id.clone()),
        2 => (&mut o.site, d.site_id.clone()),
        3 => (&mut o.site_config, d.site_config_id()),
        _ => (&mut o.cosmos, d.cosmos_id.clone()),
    }
}

fn converged_estate() -> Observed {
    static END: std::sync::OnceLock<Observed> = std::sync::OnceLock::new();
    END.get_or_init(|| try_converge(&common::desired(), &wide_open()).unwrap())
        .clone()
}

/// What the core concludes on `o`, whose `id` holds a non-object array entry: an answer that no
/// longer parses as its model stalls with `AzureResponseUnreadable` naming it (never "absent",
/// which hid the Cosmos DB and site findings and called the VNet missing), so nothing is
/// written; an entry the models do not read leaves documented pre-flight codes and a plan of
/// well-formed writes (object bodies) that the simulator applies.
fn classified(d: &Desired, o: &Observed, id: &str) -> Result<(), TestCaseError> {
    let pre = preflight::check(d, o);
    let parses = o
        .vnet
        .as_ref()
        .is_none_or(|v| model::parse::<model::VirtualNetwork>(v).is_ok())
        && o.gateway
            .as_ref()
            .is_none_or(|v| model::parse::<model::ApplicationGateway>(v).is_ok())
        && o.site
            .as_ref()
            .is_none_or(|v| model::parse::<model::Site>(v).is_ok())
        && o.site_config
            .as_ref()
            .is_none_or(|v| model::parse::<model::SiteConfig>(v).is_ok())
        && o.cosmos
            .as_ref()
            .is_none_or(|v| model::parse::<model::CosmosAccount>(v).is_ok());
    if !parses {
        prop_assert_eq!(pre.len(), 1, "{:?}", pre);
        prop_assert_eq!(pre[0].code, "AzureResponseUnreadable");
        prop_assert!(pre[0].message.contains(id), "{}", pre[0].message);
        return Ok(());
    }
    for f in &pre {
        prop_assert!(preflight::CODES.contains(&f.code), "{:?}", f);
    }
    for s in plan::plan(d, o).steps.iter().filter(|s| s.ready()) {
        prop_assert!(
            s.method == plan::Method::Delete || s.body.is_object(),
            "{:?} writes {}",
            s.kind,
            s.body
        );
        if pre.is_empty() {
            let _ = simulate::apply(o, s);
        }
    }
    Ok(())
}

/// The answer the issue names: a Cosmos DB VNet rule that is not an object.
#[test]
fn a_cosmos_vnet_rule_that_is_not_an_object_stalls_the_endpoint() {
    let d = common::desired();
    for pick in 0..6 {
        let mut o = converged_estate();
        let rules = o
            .cosmos
            .as_mut()
            .and_then(|c| c.pointer_mut("/properties/virtualNetworkRules"))
            .and_then(Value::as_array_mut)
            .expect("a converged account has the rule");
        rules.push(not_an_object(pick));
        let pre = preflight::check(&d, &o);
        assert_eq!(
            pre.iter().map(|f| f.code).collect::<Vec<_>>(),
            ["AzureResponseUnreadable"],
            "{pick}: {pre:?}"
        );
        assert!(pre[0].message.contains(&d.cosmos_id), "{}", pre[0].message);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Every array entry of every resource fhirlock reads, on the wide-open and the converged
    /// estate, replaced by something that is not an object.
    #[test]
    fn a_non_object_array_entry_ends_in_a_classified_outcome(
        converged in any::<bool>(),
        which in 0usize..5,
        entry in any::<usize>(),
        value in 0usize..6,
    ) {
        let d = common::desired();
        let mut o = if converged { converged_estate() } else { wide_open() };
        let (body, id) = modelled(&mut o, &d, which);
        let Some(body) = body.as_mut() else {
            return Err(TestCaseError::reject("not in this estate"));
        };
        let mut entries = Vec::new();
        array_entries(body, "", &mut entries);
        prop_assume!(!entries.is_empty());
        *body.pointer_mut(&entries[entry % entries.len()]).unwrap() = not_an_object(value);
        classified(&d, &o, &id)?;
    }
}
