//! Leader election against a real kube-apiserver (`testenv`).

use std::time::Duration;

use fhirlock::leader::{Leadership, elect};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::watch;

/// Short leases keep the hand-over quick; the waits below are generous bounds, not timings.
const LEASE: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(60);

async fn fresh_namespace(client: &kube::Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn wait_for(rx: &watch::Receiver<bool>, want: bool, what: &str) {
    let mut rx = rx.clone();
    tokio::time::timeout(WAIT, rx.wait_for(|v| *v == want))
        .await
        .unwrap_or_else(|_| panic!("{what}: not {want} within {WAIT:?}"))
        .unwrap_or_else(|_| panic!("{what}: election closed"));
}

async fn holder(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    lease.spec.and_then(|s| s.holder_identity)
}

/// Waits until exactly one of `a`, `b` leads; returns (leader, follower).
async fn one_leader(a: Leadership, b: Leadership) -> (Leadership, Leadership) {
    let mut ra = a.is_leader.clone();
    let mut rb = b.is_leader.clone();
    tokio::time::timeout(WAIT, async {
        loop {
            if *ra.borrow_and_update() || *rb.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = ra.changed() => {}
                _ = rb.changed() => {}
            }
        }
    })
    .await
    .expect("someone leads");
    let (la, lb) = (*a.is_leader.borrow(), *b.is_leader.borrow());
    assert!(la != lb, "exactly one leader, got a={la} b={lb}");
    if la { (a, b) } else { (b, a) }
}

/// Over a few renewals, the follower never claims to lead while the leader does.
async fn stays_single(leader: &Leadership, follower: &Leadership) {
    for _ in 0..(2 * LEASE.as_millis() / 250) {
        assert!(*leader.is_leader.borrow(), "the leader lost its lease");
        assert!(!*follower.is_leader.borrow(), "two leaders at once");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_then_the_other_after_step_down() {
    let plane = testenv::shared();
    let client = plane.client().await.unwrap();
    let ns = "leader-step-down";
    fresh_namespace(&client, ns).await;

    let a = elect(client.clone(), ns, "fhirlock", "replica-a", LEASE)
        .await
        .unwrap();
    let b = elect(client.clone(), ns, "fhirlock", "replica-b", LEASE)
        .await
        .unwrap();
    let (leader, follower) = one_leader(a, b).await;
    stays_single(&leader, &follower).await;
    let first = holder(&client, ns, "fhirlock").await.expect("a holder");
    assert!(first == "replica-a" || first == "replica-b", "{first}");

    let leader_rx = leader.is_leader.clone();
    leader.step_down().await;
    assert!(
        !*leader_rx.borrow(),
        "stepped down but still claims to lead"
    );
    wait_for(&follower.is_leader, true, "the follower takes over").await;
    let second = holder(&client, ns, "fhirlock").await.expect("a holder");
    assert_ne!(second, first);
    follower.step_down().await;
    assert_eq!(holder(&client, ns, "fhirlock").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_leader_hands_over() {
    let plane = testenv::shared();
    let client = plane.client().await.unwrap();
    let ns = "leader-drop";
    fresh_namespace(&client, ns).await;

    let a = elect(client.clone(), ns, "fhirlock", "replica-a", LEASE)
        .await
        .unwrap();
    let b = elect(client.clone(), ns, "fhirlock", "replica-b", LEASE)
        .await
        .unwrap();
    let (leader, follower) = one_leader(a, b).await;
    let first = holder(&client, ns, "fhirlock").await.expect("a holder");
    // Receivers cloned elsewhere (as the controller will) must not keep the claim alive.
    let kept = leader.is_leader.clone();
    drop(leader);
    wait_for(&kept, false, "the dropped leader stops leading").await;
    wait_for(&follower.is_leader, true, "the follower takes over").await;
    let second = holder(&client, ns, "fhirlock").await.expect("a holder");
    assert_ne!(second, first);
    follower.step_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_apiserver_stops_leading() {
    // Its own control plane, since this test stops it.
    let plane = tokio::task::spawn_blocking(testenv::ControlPlane::start)
        .await
        .unwrap()
        .unwrap();
    let client = plane.client().await.unwrap();
    let me = elect(client, "default", "fhirlock", "replica-a", LEASE)
        .await
        .unwrap();
    wait_for(&me.is_leader, true, "the only replica leads").await;
    tokio::task::spawn_blocking(move || drop(plane))
        .await
        .unwrap();
    // The lease manager itself keeps reporting `true` while its renewals fail; the guard must not.
    wait_for(&me.is_leader, false, "leadership without an apiserver").await;
    drop(me);
}

#[tokio::test]
async fn rejects_a_lease_shorter_than_two_seconds() {
    let plane = testenv::shared();
    let client = plane.client().await.unwrap();
    let err = elect(
        client,
        "default",
        "fhirlock",
        "replica-a",
        Duration::from_millis(1500),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("at least 2 s"), "{err:#}");
}
