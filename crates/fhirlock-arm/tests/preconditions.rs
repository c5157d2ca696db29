//! `put_with` / `patch_with` / `delete_with` against the arm-emulator over HTTPS: the precondition
//! is one header on the one request (no extra request), and a write ARM refuses for it is a 412
//! `PreconditionFailed`, classified `Conflict` (read again, decide again).

mod common;

use common::*;
use fhirlock_arm::{
    ArmClient, ArmError, ErrorClass, Operation, OperationStatus, Precondition, WriteOutcome,
};
use serde_json::{Value, json};
use std::time::Duration;

async fn wait(client: &ArmClient, out: WriteOutcome) {
    let WriteOutcome::Accepted(op) = out else {
        return;
    };
    finish(client, &op).await;
}

async fn finish(client: &ArmClient, op: &Operation) {
    for _ in 0..300 {
        match client.poll(op).await.expect("poll") {
            OperationStatus::InProgress { .. } => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            OperationStatus::Succeeded => return,
            other => panic!("operation ended {other:?}"),
        }
    }
    panic!("operation did not end");
}

fn precondition_failed(r: Result<WriteOutcome, ArmError>) {
    let e = r.expect_err("the write is refused");
    assert_eq!(
        (e.class, e.status, e.code.as_str()),
        (ErrorClass::Conflict, Some(412), "PreconditionFailed"),
        "{e}"
    );
}

fn etag(v: &Value) -> Precondition {
    Precondition::IfMatch(v["etag"].as_str().expect("an etag").to_owned())
}

/// A resource group and a VNet with subnet `snet-agw`, all settled.
async fn estate(emu: &Emulator, client: &ArmClient, rg: &str) -> String {
    let out = client
        .put(&emu.rg(rg), RG_API, &json!({"location": "uksouth"}))
        .await
        .unwrap();
    wait(client, out).await;
    let vnet = emu.vnet(rg, "vnet-fhir");
    let subnets = json!([{"name": "snet-agw", "properties": {"addressPrefix": "10.20.1.0/24"}}]);
    let out = client
        .put(&vnet, NET_API, &vnet_body("10.20.0.0/16", subnets))
        .await
        .unwrap();
    wait(client, out).await;
    format!("{vnet}/subnets/snet-agw")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_colleagues_write_between_read_and_write_is_not_overwritten() {
    let emu = Emulator::start().await;
    let (client, _) = emu.operator();
    let subnet = estate(&emu, &client, "rg-if-match").await;

    // fhirlock reads the subnet ...
    let read = client.get(&subnet, NET_API).await.unwrap().unwrap();
    // ... a colleague changes it ...
    let colleague = json!({"properties": {"addressPrefix": "10.20.1.0/24", "privateEndpointNetworkPolicies": "Enabled"}});
    let out = client.put(&subnet, NET_API, &colleague).await.unwrap();
    wait(&client, out).await;
    // ... and fhirlock's read-modify-write, conditional on what it read, is refused: one request.
    let ours = json!({"properties": {"addressPrefix": "10.20.1.0/24",
        "serviceEndpoints": [{"service": "Microsoft.Web", "locations": ["*"]}]}});
    let before = emu.total().await;
    precondition_failed(
        client
            .put_with(&subnet, NET_API, &ours, Some(&etag(&read)))
            .await,
    );
    assert_eq!(emu.total().await, before + 1, "the header adds no request");
    let now = client.get(&subnet, NET_API).await.unwrap().unwrap();
    assert_eq!(
        now["properties"]["privateEndpointNetworkPolicies"],
        "Enabled"
    );
    assert!(now["properties"]["serviceEndpoints"].is_null(), "{now}");

    // Read again, built on what is there, with the new etag: it goes through.
    let mut rebuilt = json!({"properties": now["properties"].clone()});
    rebuilt["properties"]["serviceEndpoints"] = ours["properties"]["serviceEndpoints"].clone();
    let out = client
        .put_with(&subnet, NET_API, &rebuilt, Some(&etag(&now)))
        .await
        .unwrap();
    wait(&client, out).await;
    let done = client.get(&subnet, NET_API).await.unwrap().unwrap();
    assert_eq!(
        done["properties"]["privateEndpointNetworkPolicies"],
        "Enabled"
    );
    assert_eq!(
        done["properties"]["serviceEndpoints"][0]["service"],
        "Microsoft.Web"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_creates_once() {
    let emu = Emulator::start().await;
    let (client, _) = emu.operator();
    let subnet = estate(&emu, &client, "rg-if-none-match").await;
    let new = subnet.replace("snet-agw", "snet-int");
    let body = json!({"properties": {"addressPrefix": "10.20.2.0/27"}});
    let out = client
        .put_with(&new, NET_API, &body, Some(&Precondition::IfNoneMatch))
        .await
        .unwrap();
    wait(&client, out).await;
    precondition_failed(
        client
            .put_with(&new, NET_API, &body, Some(&Precondition::IfNoneMatch))
            .await,
    );
    precondition_failed(
        client
            .put_with(&subnet, NET_API, &body, Some(&Precondition::IfNoneMatch))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_and_delete_carry_if_match_too() {
    let emu = Emulator::start().await;
    let (client, _) = emu.operator();
    let subnet = estate(&emu, &client, "rg-patch-delete").await;
    let vnet = subnet.trim_end_matches("/subnets/snet-agw").to_owned();
    let read = client.get(&vnet, NET_API).await.unwrap().unwrap();
    let tags = json!({"tags": {"team": "fhir"}});
    client
        .patch_with(&vnet, NET_API, &tags, Some(&etag(&read)))
        .await
        .expect("current etag");
    // The PATCH moved the etag: what was read before it is stale now, for PATCH and DELETE.
    precondition_failed(
        client
            .patch_with(&vnet, NET_API, &tags, Some(&etag(&read)))
            .await,
    );
    precondition_failed(
        client
            .delete_with(&subnet, NET_API, Some(&etag(&read)))
            .await,
    );
    let now = client.get(&subnet, NET_API).await.unwrap().unwrap();
    let out = client
        .delete_with(&subnet, NET_API, Some(&etag(&now)))
        .await
        .unwrap();
    wait(&client, out).await;
    assert_eq!(client.get(&subnet, NET_API).await.unwrap(), None);
}
