//! fhirlock-arm against the arm-emulator over HTTPS, with real `azure_identity` credentials and the
//! emulator's CA passed as the extra CA bundle.

mod common;

use common::*;
use fhirlock_arm::{
    ArmClient, ArmError, AssertionSource, CredentialConfig, ErrorClass, Operation, OperationKind,
    OperationStatus, WriteOutcome,
};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Polls `op` until it ends, checking with the emulator's stats that every poll is exactly one
/// ARM request. Returns the final status and the number of polls.
async fn poll_to_end(emu: &Emulator, client: &ArmClient, op: &Operation) -> (OperationStatus, u32) {
    for n in 1..=300 {
        let before = emu.total().await;
        let status = client.poll(op).await.expect("poll");
        assert_eq!(
            emu.total().await,
            before + 1,
            "poll {n} sent exactly one request"
        );
        match status {
            OperationStatus::InProgress { .. } => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            done => return (done, n),
        }
    }
    panic!("operation did not finish in 300 polls: {op:?}");
}

fn accepted(outcome: WriteOutcome) -> Operation {
    match outcome {
        WriteOutcome::Accepted(op) => op,
        other => panic!("expected an accepted operation, got {other:?}"),
    }
}

fn err_of<T: std::fmt::Debug>(r: Result<T, ArmError>) -> ArmError {
    match r {
        Err(e) => e,
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

async fn make_rg(client: &ArmClient, emu: &Emulator, name: &str) {
    let out = client
        .put(&emu.rg(name), RG_API, &json!({"location":"uksouth"}))
        .await
        .expect("resource group PUT");
    assert!(
        matches!(
            out,
            WriteOutcome::Done {
                status: 200 | 201,
                ..
            }
        ),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_long_running_operations_with_a_client_secret() {
    let emu = Emulator::start().await;
    let (client, rec) = emu.operator();
    let rg = emu.rg("rg-crud");

    // GET of something that does not exist is None.
    assert_eq!(client.get(&rg, RG_API).await.unwrap(), None);
    make_rg(&client, &emu, "rg-crud").await;
    let got = client
        .get(&rg, RG_API)
        .await
        .unwrap()
        .expect("group exists");
    assert_eq!(got["name"], "rg-crud");

    // VNet PUT is a long-running operation with Azure-AsyncOperation.
    let vnet = emu.vnet("rg-crud", "vnet-fhir");
    let op = accepted(
        client
            .put(&vnet, NET_API, &vnet_body("10.20.0.0/16", json!([])))
            .await
            .unwrap(),
    );
    assert_eq!(op.kind, OperationKind::AsyncOperation);
    assert_eq!(op.method, "PUT");
    assert!(
        op.status_url.starts_with(emu.ready.arm_endpoint.as_str()),
        "{op:?}"
    );
    // The handle survives a trip through a custom resource's status.
    let stored = serde_json::to_string(&op).unwrap();
    let op: Operation = serde_json::from_str(&stored).unwrap();
    let (status, _) = poll_to_end(&emu, &client, &op).await;
    assert_eq!(status, OperationStatus::Succeeded);
    let v = client.get(&vnet, NET_API).await.unwrap().unwrap();
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");

    // A subnet PUT, polled the same way.
    let subnet = format!("{vnet}/subnets/snet-agw");
    let op = accepted(
        client
            .put(
                &subnet,
                NET_API,
                &json!({"properties":{"addressPrefix":"10.20.1.0/24"}}),
            )
            .await
            .unwrap(),
    );
    let (status, _) = poll_to_end(&emu, &client, &op).await;
    assert_eq!(status, OperationStatus::Succeeded);
    let s = client.get(&subnet, NET_API).await.unwrap().unwrap();
    assert_eq!(s["properties"]["addressPrefix"], "10.20.1.0/24");

    // PATCH (tags) on the VNet.
    let out = client
        .patch(
            &vnet,
            NET_API,
            &json!({"tags":{"fhirlock-owner":"ns/name"}}),
        )
        .await
        .unwrap();
    if let WriteOutcome::Accepted(op) = out {
        assert_eq!(
            poll_to_end(&emu, &client, &op).await.0,
            OperationStatus::Succeeded
        );
    }
    let v = client.get(&vnet, NET_API).await.unwrap().unwrap();
    assert_eq!(v["tags"]["fhirlock-owner"], "ns/name");

    // DELETE the subnet: 202 + Location + Azure-AsyncOperation, then gone.
    let op = accepted(client.delete(&subnet, NET_API).await.unwrap());
    assert_eq!(op.method, "DELETE");
    let (status, _) = poll_to_end(&emu, &client, &op).await;
    assert_eq!(status, OperationStatus::Succeeded);
    assert_eq!(client.get(&subnet, NET_API).await.unwrap(), None);
    // Deleting what is gone is done, not an error.
    let again = client.delete(&subnet, NET_API).await.unwrap();
    assert!(matches!(again, WriteOutcome::Done { .. }), "{again:?}");

    // The budget comes from the rate-limit headers of the last responses.
    let b = client
        .budget(&emu.ready.subscription_id)
        .expect("budget seen");
    assert!(b.reads.is_some_and(|r| r > 0 && r < 250), "{b:?}");
    assert!(b.writes.is_some_and(|w| w > 0 && w < 200), "{b:?}");
    assert!(b.deletes.is_some(), "{b:?}");
    assert_eq!(client.budget("00000000-0000-0000-0000-000000000000"), None);

    // The observer saw every request the emulator counted, with resource types and polls.
    let events = rec.take();
    assert_eq!(events.len() as u64, emu.total().await);
    assert!(
        events
            .iter()
            .any(|e| e.poll && e.resource_type.ends_with("/operations"))
    );
    assert!(events.iter().any(|e| e.method == "PUT"
        && e.resource_type == "Microsoft.Network/virtualNetworks/subnets"
        && e.writes_left.is_some()));
    assert!(events.iter().all(|e| e.status.is_some() && e.attempt == 0));

    // Deleting the group is a Location-only operation (202 while running, then 200/204).
    let op = accepted(client.delete(&rg, RG_API).await.unwrap());
    assert_eq!(op.kind, OperationKind::Location, "{op:?}");
    assert_eq!(
        poll_to_end(&emu, &client, &op).await.0,
        OperationStatus::Succeeded
    );
    assert_eq!(client.get(&rg, RG_API).await.unwrap(), None);
    assert_eq!(
        client.get(&vnet, NET_API).await.map_err(|e| e.code),
        Err("ResourceGroupNotFound".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_classified() {
    let emu = Emulator::start().await;
    let (client, rec) = emu.operator();
    make_rg(&client, &emu, "rg-faults").await;
    let rg = emu.rg("rg-faults");
    let vnet = emu.vnet("rg-faults", "vnet-f");
    let body = vnet_body("10.30.0.0/16", json!([]));

    // 429 with Retry-After → Throttled, carrying the wait; nothing sleeps here.
    emu.fault(json!({"method":"GET","path":"*/resourceGroups/rg-faults","count":1,"status":429,"retryAfter":7}))
        .await;
    let e = err_of(client.get(&rg, RG_API).await);
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (
            ErrorClass::Throttled,
            Some(429),
            "SubscriptionRequestsThrottled"
        )
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    assert!(e.request_id.is_some());

    // 500 and 503 → Transient.
    for status in [500u16, 503] {
        emu.fault(json!({"method":"GET","path":"*/resourceGroups/rg-faults","count":1,"status":status,"retryAfter":2}))
            .await;
        let e = err_of(client.get(&rg, RG_API).await);
        assert_eq!((e.class, e.status), (ErrorClass::Transient, Some(status)));
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    }

    // 409 AnotherOperationInProgress on a PUT → Conflict; the resource was not created, and
    // the caller's retry creates exactly one.
    emu.fault(json!({"method":"PUT","path":"*/virtualNetworks/vnet-f","count":1,"status":409}))
        .await;
    let e = err_of(client.put(&vnet, NET_API, &body).await);
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (
            ErrorClass::Conflict,
            Some(409),
            "AnotherOperationInProgress"
        )
    );
    assert_eq!(client.get(&vnet, NET_API).await.unwrap(), None);

    // A dropped connection on a PUT → Transient without a status; re-PUT (idempotent by id).
    emu.fault(
        json!({"method":"PUT","path":"*/virtualNetworks/vnet-f","count":1,"dropConnection":true}),
    )
    .await;
    let e = err_of(client.put(&vnet, NET_API, &body).await);
    assert_eq!((e.class, e.status), (ErrorClass::Transient, None));
    let op = accepted(client.put(&vnet, NET_API, &body).await.unwrap());
    assert_eq!(
        poll_to_end(&emu, &client, &op).await.0,
        OperationStatus::Succeeded
    );
    let list = client
        .get(
            &format!("{rg}/providers/Microsoft.Network/virtualNetworks"),
            NET_API,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        list["value"].as_array().map(Vec::len),
        Some(1),
        "exactly one VNet: {list}"
    );

    // 412 PreconditionFailed on a PATCH → Conflict.
    emu.fault(json!({"method":"PATCH","path":"*/virtualNetworks/vnet-f","count":1,"status":412}))
        .await;
    let e = err_of(
        client
            .patch(&vnet, NET_API, &json!({"tags":{"a":"b"}}))
            .await,
    );
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (ErrorClass::Conflict, Some(412), "PreconditionFailed")
    );

    // A dropped connection on a GET is re-sent once at once...
    rec.take();
    emu.reset_stats().await;
    emu.fault(
        json!({"method":"GET","path":"*/virtualNetworks/vnet-f","count":1,"dropConnection":true}),
    )
    .await;
    assert!(client.get(&vnet, NET_API).await.unwrap().is_some());
    assert_eq!(emu.total().await, 2);
    let attempts: Vec<(Option<u16>, u32)> =
        rec.take().iter().map(|e| (e.status, e.attempt)).collect();
    assert_eq!(attempts, vec![(None, 0), (Some(200), 1)]);
    // ...but only once.
    emu.fault(
        json!({"method":"GET","path":"*/virtualNetworks/vnet-f","count":2,"dropConnection":true}),
    )
    .await;
    let e = err_of(client.get(&vnet, NET_API).await);
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (ErrorClass::Transient, None, "ConnectionError")
    );
    assert_eq!(emu.total().await, 4);

    // 401 ExpiredAuthenticationToken → a fresh token and one retry, which succeeds.
    rec.take();
    emu.fault(json!({"method":"GET","path":"*/virtualNetworks/vnet-f","count":1,"status":401}))
        .await;
    assert!(client.get(&vnet, NET_API).await.unwrap().is_some());
    let seen: Vec<(Option<u16>, u32)> = rec.take().iter().map(|e| (e.status, e.attempt)).collect();
    assert_eq!(seen, vec![(Some(401), 0), (Some(200), 1)]);
    // Twice in a row → Auth, no loop.
    emu.fault(json!({"method":"GET","path":"*/virtualNetworks/vnet-f","count":2,"status":401}))
        .await;
    let e = err_of(client.get(&vnet, NET_API).await);
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (ErrorClass::Auth, Some(401), "ExpiredAuthenticationToken")
    );
    assert_eq!(rec.take().len(), 2);

    // A failed long-running operation → Failed with the operation's code, classified.
    let subnet = format!("{vnet}/subnets/snet-x");
    emu.fault(
        json!({"method":"PUT","path":"*/subnets/snet-x","count":1,"failLro":"InternalServerError"}),
    )
    .await;
    let op = accepted(
        client
            .put(
                &subnet,
                NET_API,
                &json!({"properties":{"addressPrefix":"10.30.1.0/24"}}),
            )
            .await
            .unwrap(),
    );
    match poll_to_end(&emu, &client, &op).await.0 {
        OperationStatus::Failed(e) => {
            assert_eq!(
                (e.class, e.code.as_str(), e.status),
                (ErrorClass::Transient, "InternalServerError", None)
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    emu.fault(json!({"method":"PUT","path":"*/subnets/snet-y","count":1,"failLro":"NetcfgSubnetRangesOverlap"}))
        .await;
    let op = accepted(
        client
            .put(
                &format!("{vnet}/subnets/snet-y"),
                NET_API,
                &json!({"properties":{"addressPrefix":"10.30.2.0/24"}}),
            )
            .await
            .unwrap(),
    );
    match poll_to_end(&emu, &client, &op).await.0 {
        OperationStatus::Failed(e) => assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Terminal, "NetcfgSubnetRangesOverlap")
        ),
        other => panic!("expected Failed, got {other:?}"),
    }

    // A throttled poll is an error of the poll, not a failed operation.
    let op = accepted(client.delete(&subnet, NET_API).await.unwrap());
    emu.fault(
        json!({"method":"GET","path":"*/operations/*","count":1,"status":429,"retryAfter":3}),
    )
    .await;
    let e = err_of(client.poll(&op).await);
    assert_eq!(
        (e.class, e.retry_after),
        (ErrorClass::Throttled, Some(Duration::from_secs(3)))
    );
    assert_eq!(
        poll_to_end(&emu, &client, &op).await.0,
        OperationStatus::Succeeded
    );

    // Validation errors from the RP → Terminal.
    let e = err_of(
        client
            .put(
                &format!("{vnet}/subnets/outside"),
                NET_API,
                &json!({"properties":{"addressPrefix":"192.168.0.0/24"}}),
            )
            .await,
    );
    assert_eq!(
        (e.class, e.status),
        (ErrorClass::Terminal, Some(400)),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_without_a_role_or_a_valid_secret_are_auth_errors() {
    let emu = Emulator::start().await;
    let rg = emu.rg("rg-auth");

    // The outsider gets a token but no role: 403 AuthorizationFailed.
    let outsider = ArmClient::new(
        emu.config(emu.secret_credential(OUTSIDER_CLIENT_ID, OUTSIDER_CLIENT_SECRET)),
    )
    .unwrap();
    let e = err_of(outsider.get(&rg, RG_API).await);
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (ErrorClass::Auth, Some(403), "AuthorizationFailed")
    );
    let e = err_of(
        outsider
            .put(&rg, RG_API, &json!({"location":"uksouth"}))
            .await,
    );
    assert_eq!(e.class, ErrorClass::Auth);

    // A wrong secret fails at the token endpoint: Auth, no status, and the secret is nowhere.
    let secret = "definitely-not-the-secret-6d1f";
    let wrong = ArmClient::new(emu.config(emu.secret_credential(DEV_CLIENT_ID, secret))).unwrap();
    emu.reset_stats().await;
    let e = err_of(wrong.get(&rg, RG_API).await);
    assert_eq!((e.class, e.status), (ErrorClass::Auth, None), "{e}");
    assert!(e.code.starts_with("AADSTS"), "{e}");
    let shown = format!("{e} {e:?} {wrong:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert_eq!(emu.total().await, 0, "no ARM request without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extra_ca_bundle_is_what_makes_the_emulator_trusted() {
    let emu = Emulator::start().await;
    let mut cfg = emu.config(emu.secret_credential(DEV_CLIENT_ID, DEV_CLIENT_SECRET));
    cfg.extra_ca_pem = None;
    let untrusted = ArmClient::new(cfg).unwrap();
    let e = err_of(untrusted.get(&emu.rg("rg-ca"), RG_API).await);
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (ErrorClass::Terminal, None, "TlsCertificateNotTrusted"),
        "{e}"
    );
    assert_eq!(emu.total().await, 0);

    let mut cfg = emu.config(emu.secret_credential(DEV_CLIENT_ID, DEV_CLIENT_SECRET));
    let bogus = emu.dir.join("not-a-ca.pem");
    std::fs::write(&bogus, "no certificates here").unwrap();
    cfg.extra_ca_pem = Some(bogus);
    assert!(ArmClient::new(cfg).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_rereads_the_token_file_on_every_exchange() {
    let keys = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(keys.path());
    let emu = Emulator::start_with_issuer(&issuer.jwks_path).await;
    let token_file = emu.dir.join("azure-identity-token");
    // The file need not exist when the client is built (the kubelet may not have written it yet).
    let client = ArmClient::new(emu.config(CredentialConfig::WorkloadIdentity {
        tenant_id: emu.ready.tenant_id.clone(),
        client_id: DEV_CLIENT_ID.into(),
        token_file: token_file.clone(),
    }))
    .unwrap();
    let rg = emu.rg("rg-wi");
    let e = err_of(client.get(&rg, RG_API).await);
    assert_eq!(e.class, ErrorClass::Auth, "{e}");

    // A token for another subject: no matching federated credential.
    std::fs::write(&token_file, issuer.token("system:serviceaccount:other:sa")).unwrap();
    let e = err_of(client.get(&rg, RG_API).await);
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Auth, "AADSTS70021"),
        "{e}"
    );

    // The right token, written to the same file: the same client picks it up.
    let good = issuer.token(WI_SUBJECT);
    std::fs::write(&token_file, &good).unwrap();
    assert_eq!(client.get(&rg, RG_API).await.unwrap(), None);
    let out = client
        .put(&rg, RG_API, &json!({"location":"uksouth"}))
        .await
        .unwrap();
    assert!(matches!(out, WriteOutcome::Done { .. }));
    assert!(!format!("{client:?}").contains(&good));
}

/// Counts exchanges; hands out the issuer's token.
#[derive(Debug)]
struct CountingSource {
    token: String,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl AssertionSource for CountingSource {
    async fn assertion(&self) -> anyhow::Result<String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.token.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_assertions_are_exchanged_again_when_arm_rejects_the_token() {
    let keys = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(keys.path());
    let emu = Emulator::start_with_issuer(&issuer.jwks_path).await;
    let source = Arc::new(CountingSource {
        token: issuer.token(WI_SUBJECT),
        calls: AtomicUsize::new(0),
    });
    let client = ArmClient::new(emu.config(CredentialConfig::ClientAssertion {
        tenant_id: emu.ready.tenant_id.clone(),
        client_id: DEV_CLIENT_ID.into(),
        source: source.clone(),
    }))
    .unwrap();
    let rg = emu.rg("rg-assert");
    assert_eq!(client.get(&rg, RG_API).await.unwrap(), None);
    assert_eq!(client.get(&rg, RG_API).await.unwrap(), None);
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        1,
        "the token is cached"
    );

    // ARM says the token expired: the cache is dropped, a new exchange, one retry.
    emu.fault(json!({"path":"*/resourceGroups/rg-assert","count":1,"status":401,"code":"ExpiredAuthenticationToken"}))
        .await;
    emu.reset_stats().await;
    assert_eq!(client.get(&rg, RG_API).await.unwrap(), None);
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    assert_eq!(emu.total().await, 2);

    // An assertion source that fails → Auth, without a request to ARM.
    #[derive(Debug)]
    struct Broken;
    #[async_trait::async_trait]
    impl AssertionSource for Broken {
        async fn assertion(&self) -> anyhow::Result<String> {
            anyhow::bail!("TokenRequest API refused")
        }
    }
    let broken = ArmClient::new(emu.config(CredentialConfig::ClientAssertion {
        tenant_id: emu.ready.tenant_id.clone(),
        client_id: DEV_CLIENT_ID.into(),
        source: Arc::new(Broken),
    }))
    .unwrap();
    let e = err_of(broken.get(&rg, RG_API).await);
    assert_eq!((e.class, e.status), (ErrorClass::Auth, None));
    assert!(e.message.contains("TokenRequest API refused"), "{e}");
    assert_eq!(emu.total().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_sends_the_token_only_to_the_arm_endpoint() {
    let emu = Emulator::start().await;
    let (client, rec) = emu.operator();
    let op = Operation {
        resource_id: emu.vnet("rg", "v"),
        method: "PUT".into(),
        api_version: NET_API.into(),
        status_url: "https://attacker.example/steal".into(),
        kind: OperationKind::AsyncOperation,
        retry_after_secs: None,
    };
    let e = err_of(client.poll(&op).await);
    assert_eq!(e.class, ErrorClass::Terminal);
    // A list's nextLink is held to the same rule.
    let e = err_of(
        client
            .get_next_link("https://attacker.example/subscriptions/x/providers/Microsoft.Web/sites?api-version=2024-11-01")
            .await,
    );
    assert_eq!(e.class, ErrorClass::Terminal);
    assert!(rec.take().is_empty());
    assert_eq!(emu.total().await, 0);

    // Paths that are not ARM resource ids are refused before any request.
    for bad in [
        "subscriptions/x",
        "/subscriptions/x?evil=1",
        "/subscriptions/../x",
    ] {
        let e = err_of(client.get(bad, RG_API).await);
        assert_eq!(e.class, ErrorClass::Terminal, "{bad}");
    }
    let e = err_of(client.get(&emu.rg("rg"), "").await);
    assert_eq!(e.class, ErrorClass::Terminal);
    assert_eq!(emu.total().await, 0);
}

/// Hands out scripted tokens, each claiming to be valid for an hour (a skewed clock, a revoked
/// token: the credential cannot know ARM will refuse it).
#[derive(Debug)]
struct Scripted {
    tokens: std::sync::Mutex<Vec<String>>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for Scripted {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        assert_eq!(scopes, ["https://management.azure.com/.default"]);
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut t = self.tokens.lock().unwrap();
        let token = if t.len() > 1 {
            t.remove(0)
        } else {
            t[0].clone()
        };
        Ok(azure_core::credentials::AccessToken::new(
            token,
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_arm_finds_expired_is_replaced_once() {
    let emu = Emulator::start().await;
    let expired = emu.mint_token(-120).await;
    let fresh = emu.mint_token(3600).await;
    let rg = emu.rg("rg-expired");

    // ARM itself (not an injected fault) rejects the expired JWT; one new token, one retry.
    let cred = Arc::new(Scripted {
        tokens: std::sync::Mutex::new(vec![expired.clone(), fresh]),
        calls: AtomicUsize::new(0),
    });
    let client = ArmClient::new(emu.config(CredentialConfig::Custom(cred.clone()))).unwrap();
    assert_eq!(client.get(&rg, RG_API).await.unwrap(), None);
    assert_eq!(cred.calls.load(Ordering::SeqCst), 2);
    assert_eq!(emu.total().await, 2);
    let by_status = &emu.stats().await["byStatus"];
    assert_eq!(
        (by_status["401"].as_u64(), by_status["404"].as_u64()),
        (Some(1), Some(1)),
        "{by_status}"
    );

    // A credential that keeps handing out the expired token: Auth after exactly two requests.
    let stuck = Arc::new(Scripted {
        tokens: std::sync::Mutex::new(vec![expired.clone()]),
        calls: AtomicUsize::new(0),
    });
    let client = ArmClient::new(emu.config(CredentialConfig::Custom(stuck.clone()))).unwrap();
    emu.reset_stats().await;
    let e = err_of(
        client
            .put(&rg, RG_API, &json!({"location":"uksouth"}))
            .await,
    );
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (ErrorClass::Auth, Some(401), "ExpiredAuthenticationToken")
    );
    assert_eq!(emu.total().await, 2);
    assert_eq!(stuck.calls.load(Ordering::SeqCst), 2);
    assert!(
        !format!("{e} {e:?}").contains(&expired),
        "the token is not in the error"
    );
    // Nothing was created.
    let (op, _) = emu.operator();
    assert_eq!(op.get(&rg, RG_API).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_registers_a_feature() {
    let emu = Emulator::start().await;
    let (client, _) = emu.operator();
    let feature = format!(
        "/subscriptions/{}/providers/Microsoft.Features/providers/Microsoft.Network/features/EnableApplicationGatewayNetworkIsolation",
        emu.ready.subscription_id
    );
    let before = client.get(&feature, "2021-07-01").await.unwrap().unwrap();
    assert_ne!(before["properties"]["state"], "Registered");
    let out = client
        .post(&format!("{feature}/register"), "2021-07-01", None)
        .await
        .unwrap();
    match out {
        WriteOutcome::Done {
            status: 200,
            body: Some(b),
        } => {
            assert_eq!(b["properties"]["state"], "Registering", "{b}");
        }
        other => panic!("{other:?}"),
    }
    // The caller watches the feature with GETs (one per reconcile); here, until it is done.
    for _ in 0..300 {
        let f = client.get(&feature, "2021-07-01").await.unwrap().unwrap();
        if f["properties"]["state"] == "Registered" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("feature never registered");
}

#[test]
fn the_client_is_cheap_to_share() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<ArmClient>();
    shareable::<Operation>();
    shareable::<ArmError>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_conflicts_from_running_operations() {
    let emu = Emulator::start_with_slow_operations().await;
    let (client, _) = emu.operator();
    make_rg(&client, &emu, "rg-busy").await;
    let vnet = emu.vnet("rg-busy", "vnet-busy");
    if let WriteOutcome::Accepted(op) = client
        .put(&vnet, NET_API, &vnet_body("10.40.0.0/16", json!([])))
        .await
        .unwrap()
    {
        assert_eq!(
            poll_to_end(&emu, &client, &op).await.0,
            OperationStatus::Succeeded
        );
    }

    // A subnet operation runs for ten minutes; another write to the VNet meanwhile is a 409.
    let a = accepted(
        client
            .put(
                &format!("{vnet}/subnets/a"),
                NET_API,
                &json!({"properties":{"addressPrefix":"10.40.1.0/24"}}),
            )
            .await
            .unwrap(),
    );
    assert!(a.retry_after_secs.is_some_and(|s| s > 0), "{a:?}");
    assert!(matches!(
        client.poll(&a).await.unwrap(),
        OperationStatus::InProgress {
            retry_after: Some(_)
        }
    ));
    let e = err_of(
        client
            .put(
                &format!("{vnet}/subnets/b"),
                NET_API,
                &json!({"properties":{"addressPrefix":"10.40.2.0/24"}}),
            )
            .await,
    );
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (
            ErrorClass::Conflict,
            Some(409),
            "AnotherOperationInProgress"
        ),
        "{e}"
    );
    assert_eq!(
        client
            .get(&format!("{vnet}/subnets/b"), NET_API)
            .await
            .unwrap(),
        None
    );

    // Cosmos: 200 + Azure-AsyncOperation on PUT; an overlapping PATCH is 412 PreconditionFailed.
    let cosmos = format!(
        "{}/providers/Microsoft.DocumentDB/databaseAccounts/fhir-cosmos",
        emu.rg("rg-busy")
    );
    let body = json!({"location":"uksouth","kind":"GlobalDocumentDB","properties":{
        "databaseAccountOfferType":"Standard",
        "locations":[{"locationName":"uksouth","failoverPriority":0}]}});
    let op = accepted(client.put(&cosmos, "2024-11-15", &body).await.unwrap());
    assert_eq!(op.kind, OperationKind::AsyncOperation);
    let e = err_of(
        client
            .patch(&cosmos, "2024-11-15", &json!({"properties":{"ipRules":[]}}))
            .await,
    );
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (ErrorClass::Conflict, Some(412), "PreconditionFailed"),
        "{e}"
    );
}
