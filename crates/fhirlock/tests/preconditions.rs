//! Lost updates on shared resources (issue #12, item 4), end to end: fhirlock's own observe,
//! plan and apply code against the arm-emulator (in process, over HTTPS, seeded with the
//! wide-open estate), with a person in the portal writing between fhirlock's read and its write.
//! The write carries `If-Match` / `If-None-Match`, ARM answers 412, and the next pass reads
//! again and builds on the person's change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fhirlock::reconcile::{apply, observe};
use fhirlock_arm::{ArmClient, ErrorClass, OperationStatus, WriteOutcome};
use fhirlock_core::plan::{self, Precondition, StepKind};
use fhirlock_core::{Certificate, Desired, Observed, Step};
use fhirlock_testkit::{OPERATOR_CLIENT, OPERATOR_SECRET, PORTAL_CLIENT, PORTAL_SECRET, Ready};
use serde_json::{Value, json};

const NET: &str = fhirlock_core::observed::api_version::NETWORK;

struct Azure {
    running: arm_emulator::server::Running,
    fhirlock: ArmClient,
    portal: ArmClient,
    _dir: tempfile::TempDir,
}

impl Drop for Azure {
    fn drop(&mut self) {
        self.running.stop();
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The emulator with the wide-open estate; fhirlock's client and the portal user's.
async fn azure() -> Azure {
    let dir = tempfile::tempdir().unwrap();
    let running = arm_emulator::server::start(arm_emulator::server::Options {
        addr: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        config: Some(repo("examples/arm-emulator-estate.yaml")),
        time_scale: 0.01,
        hostnames: vec![],
    })
    .await
    .expect("emulator starts");
    let ready = Ready::parse(&running.ready_line()).unwrap();
    let fhirlock = ready
        .arm_client(OPERATOR_CLIENT, OPERATOR_SECRET, "fhirlock-test")
        .unwrap();
    let portal = ready
        .arm_client(PORTAL_CLIENT, PORTAL_SECRET, "portal")
        .unwrap();
    Azure {
        running,
        fhirlock,
        portal,
        _dir: dir,
    }
}

/// `examples/fhir-endpoint.yaml`, the endpoint the estate is for.
fn desired() -> Desired {
    let text = std::fs::read_to_string(repo("examples/fhir-endpoint.yaml")).unwrap();
    let sfe: fhirlock_api::SecuredFhirEndpoint = serde_yaml::from_str(&text).unwrap();
    let cert = Certificate::Pfx {
        data_base64: "UEZY".into(),
        password: "pw".into(),
        fingerprint: "abc123".into(),
    };
    Desired::from_spec("default", "patient-records", &sfe.spec, cert)
}

async fn finish(arm: &ArmClient, out: WriteOutcome) {
    let WriteOutcome::Accepted(op) = out else {
        return;
    };
    for _ in 0..500 {
        match arm.poll(&op).await.expect("poll") {
            OperationStatus::InProgress { .. } => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            OperationStatus::Succeeded => return,
            other => panic!("operation ended {other:?}"),
        }
    }
    panic!("operation did not end");
}

/// One look, as a pass makes it when it has no followup: everything read again.
async fn look(arm: &ArmClient, d: &Desired) -> Observed {
    observe::read_all(arm, d).await.expect("read")
}

fn step_of(d: &Desired, o: &Observed, kind: StepKind) -> Step {
    plan::plan(d, o)
        .steps
        .into_iter()
        .find(|s| s.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} step"))
}

/// fhirlock's pass of writes, for one step.
async fn write(arm: &ArmClient, step: Step) -> Result<(), fhirlock_arm::ArmError> {
    match apply::run(arm, &[step], |_| true).await {
        Ok(apply::Applied::Pending { operation, .. }) => {
            finish(arm, WriteOutcome::Accepted(*operation)).await;
            Ok(())
        }
        Ok(_) => Ok(()),
        Err((_, e)) => Err(e),
    }
}

async fn portal_put_subnet(azure: &Azure, d: &Desired, body: Value) {
    let out = azure
        .portal
        .put(&d.gateway_subnet.id, NET, &body)
        .await
        .expect("portal PUT");
    finish(&azure.portal, out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_change_between_read_and_write_is_kept() {
    let azure = azure().await;
    let d = desired();
    // The gateway subnet exists already (fhirlock adopts it), without what fhirlock adds.
    portal_put_subnet(
        &azure,
        &d,
        json!({"properties": {"addressPrefix": "10.20.1.0/26"}}),
    )
    .await;

    // fhirlock reads and plans: the subnet's write is conditional on what it read.
    let first = step_of(
        &d,
        &look(&azure.fhirlock, &d).await,
        StepKind::GatewaySubnet,
    );
    let Some(Precondition::IfMatch(read)) = first.precondition.clone() else {
        panic!("no If-Match: {:?}", first.precondition);
    };
    // A person turns private-endpoint network policies on in the portal, meanwhile.
    portal_put_subnet(
        &azure,
        &d,
        json!({"properties": {"addressPrefix": "10.20.1.0/26", "privateEndpointNetworkPolicies": "Enabled"}}),
    )
    .await;

    // fhirlock's write is refused as a conflict, not sent blind over the person's change.
    let e = write(&azure.fhirlock, first).await.expect_err("412");
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (ErrorClass::Conflict, Some(412), "PreconditionFailed")
    );

    // The next pass reads again and plans on what is there now, with the etag read now.
    let second = step_of(
        &d,
        &look(&azure.fhirlock, &d).await,
        StepKind::GatewaySubnet,
    );
    match &second.precondition {
        Some(Precondition::IfMatch(now)) => assert_ne!(now, &read, "not the old etag"),
        other => panic!("no If-Match: {other:?}"),
    }
    assert_eq!(
        second.body["properties"]["privateEndpointNetworkPolicies"],
        "Enabled"
    );
    write(&azure.fhirlock, second)
        .await
        .expect("the re-planned write");

    // Both changes hold: fhirlock's delegation and endpoint, and the person's policy.
    let subnet = azure
        .fhirlock
        .get(&d.gateway_subnet.id, NET)
        .await
        .unwrap()
        .unwrap();
    let p = &subnet["properties"];
    assert_eq!(p["privateEndpointNetworkPolicies"], "Enabled", "{subnet}");
    assert_eq!(
        p["delegations"][0]["properties"]["serviceName"],
        "Microsoft.Network/applicationGateways"
    );
    assert_eq!(p["serviceEndpoints"][0]["service"], "Microsoft.Web");
    assert!(
        !plan::plan(&d, &look(&azure.fhirlock, &d).await)
            .steps
            .iter()
            .any(|s| s.kind == StepKind::GatewaySubnet),
        "nothing left to do on the subnet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_created_meanwhile_is_adopted_not_replaced() {
    let azure = azure().await;
    let d = desired();
    // fhirlock plans to create the gateway subnet: If-None-Match: *.
    let first = step_of(
        &d,
        &look(&azure.fhirlock, &d).await,
        StepKind::GatewaySubnet,
    );
    assert!(first.creates);
    assert_eq!(first.precondition, Some(Precondition::IfNoneMatch));
    // Someone creates it first, with a setting of their own.
    portal_put_subnet(
        &azure,
        &d,
        json!({"properties": {"addressPrefix": "10.20.1.0/26", "privateEndpointNetworkPolicies": "Enabled"}}),
    )
    .await;
    let e = write(&azure.fhirlock, first).await.expect_err("412");
    assert_eq!((e.class, e.status), (ErrorClass::Conflict, Some(412)));
    // The next pass sees it exists: an adoption, conditional on its etag, built on it.
    let second = step_of(
        &d,
        &look(&azure.fhirlock, &d).await,
        StepKind::GatewaySubnet,
    );
    assert!(!second.creates);
    assert!(matches!(
        second.precondition,
        Some(Precondition::IfMatch(_))
    ));
    write(&azure.fhirlock, second).await.expect("adopted");
    let subnet = azure
        .fhirlock
        .get(&d.gateway_subnet.id, NET)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        subnet["properties"]["privateEndpointNetworkPolicies"],
        "Enabled"
    );
}

/// The example endpoint as `owner` (`namespace/name`), knowing the endpoints in `peers`
/// (each `namespace/name`, created that many seconds after the epoch).
fn endpoint_as(owner: &str, created: i64, peers: &[(&str, i64)]) -> Desired {
    let (ns, name) = owner.split_once('/').unwrap();
    let text = std::fs::read_to_string(repo("examples/fhir-endpoint.yaml")).unwrap();
    let spec = serde_yaml::from_str::<fhirlock_api::SecuredFhirEndpoint>(&text)
        .unwrap()
        .spec;
    let mut d = Desired::from_spec(ns, name, &spec, desired().gateway.certificate);
    let at = |s: i64| Some(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
    d.peers = fhirlock_core::peers::Peers {
        created: at(created),
        others: peers
            .iter()
            .map(|(o, t)| {
                let (ns, name) = o.split_once('/').unwrap();
                fhirlock_core::peers::Claim::of(ns, name, at(*t), false, &spec)
            })
            .collect(),
    };
    d
}

/// Issue 13: two endpoints that name the same gateway. Normally the later one stalls on
/// `ConflictsWith` before writing; here both passed that check (neither had seen the other yet)
/// and both PUT the gateway as a creation at once. `If-None-Match: *` lets only the first
/// succeed: the second is 412, and its next look finds the gateway someone else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_endpoints_creating_the_same_gateway_cannot_both_succeed() {
    let azure = azure().await;
    let a = endpoint_as("team-a/records", 100, &[]);
    let b = endpoint_as("team-b/records", 100, &[]);
    // A prepares the subnets until its gateway may be created.
    for _ in 0..20 {
        let plan = plan::plan(&a, &look(&azure.fhirlock, &a).await);
        if plan
            .steps
            .iter()
            .any(|s| s.kind == StepKind::Gateway && s.ready())
        {
            break;
        }
        let ready: Vec<Step> = plan.steps.into_iter().filter(|s| s.ready()).collect();
        for s in ready {
            write(&azure.fhirlock, s).await.expect("a write");
        }
    }
    let (oa, ob) = (
        look(&azure.fhirlock, &a).await,
        look(&azure.fhirlock, &b).await,
    );
    let (put_a, put_b) = (
        step_of(&a, &oa, StepKind::Gateway),
        step_of(&b, &ob, StepKind::Gateway),
    );
    assert!(put_a.ready() && put_b.ready() && put_a.creates && put_b.creates);
    assert_eq!(put_b.precondition, Some(Precondition::IfNoneMatch));
    let (ra, rb) = tokio::join!(write(&azure.fhirlock, put_a), write(&azure.fhirlock, put_b));
    let (won, lost) = match (ra, rb) {
        (Ok(()), Err(e)) => (&a, e),
        (Err(e), Ok(())) => (&b, e),
        other => panic!("both creations succeeded or both failed: {other:?}"),
    };
    assert_eq!((lost.class, lost.status), (ErrorClass::Conflict, Some(412)));
    let gw = azure
        .fhirlock
        .get(&a.gateway.id, NET)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gw["tags"]["fhirlock-owner"], json!(won.owner));
    // The loser's next look: the gateway is not its own, so it writes nothing.
    let loser = if won.owner == a.owner { &b } else { &a };
    let o = look(&azure.fhirlock, loser).await;
    let codes: Vec<_> = fhirlock_core::preflight::check(loser, &o)
        .into_iter()
        .map(|f| f.code)
        .collect();
    assert!(codes.contains(&"GatewayNotOwned"), "{codes:?}");
    // And once the endpoints see each other, the later one stalls on the claim itself first.
    let b = endpoint_as("team-b/records", 100, &[("team-a/records", 100)]);
    let first = fhirlock_core::preflight::check(&b, &look(&azure.fhirlock, &b).await);
    assert_eq!(first[0].code, "ConflictsWith", "{first:?}");
    assert!(first[0].message.contains("team-a/records"));
}
