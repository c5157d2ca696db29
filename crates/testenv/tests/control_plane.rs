//! The harness itself: a real control plane that mints service-account tokens Azure can
//! exchange, and that never leaves a process behind.

use std::io::BufRead as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; count it as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn wait_gone(pids: &[u32]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let fields: Vec<_> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(1).and_then(|pp| pp.parse::<u32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn token_request_mints_a_service_account_token_for_the_azure_audience() {
    let plane = testenv::shared();
    let client = plane.client().await.unwrap();
    let ns = "token-request";
    let nss: Api<Namespace> = Api::all(client.clone());
    let _ = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "fhir-azure"}})).unwrap(),
    )
    .await
    .unwrap();

    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["api://AzureADTokenExchange".into()],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let resp = sas
        .create_token_request("fhir-azure", &PostParams::default(), &req)
        .await
        .unwrap();
    let token = resp.status.unwrap().token;

    let parts: Vec<_> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(
        header["alg"], "RS256",
        "Entra accepts RS256 from federated issuers"
    );
    assert_eq!(claims["iss"], plane.server.as_str());
    assert_eq!(claims["aud"], json!(["api://AzureADTokenExchange"]));
    assert_eq!(
        claims["sub"],
        "system:serviceaccount:token-request:fhir-azure"
    );

    // The issuer publishes the key that verifies it.
    let jwks = client
        .request_text(
            http::Request::get("/openid/v1/jwks")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let jwks: Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
}

#[test]
fn stop_ends_both_processes_and_removes_the_directory() {
    let plane = testenv::ControlPlane::start().unwrap();
    let pids = plane.pids();
    let dir = plane.dir().to_owned();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| alive(*p)));
    drop(plane);
    assert!(
        wait_gone(&pids),
        "etcd or kube-apiserver still running after stop"
    );
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[test]
fn killing_the_owner_with_sigkill_takes_the_control_plane_down() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_testenv"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    assert!(
        ready["server"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    let kids = children_of(child.id());
    assert_eq!(kids.len(), 2, "etcd and kube-apiserver");
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(wait_gone(&kids), "children outlived a SIGKILLed owner");
    let _ = std::fs::remove_dir_all(ready["dir"].as_str().unwrap());
}

#[test]
fn etcd_and_apiserver_restart_on_the_same_ports_and_keep_their_data() {
    let plane = testenv::ControlPlane::start().unwrap();
    let kubectl = |args: &[&str]| {
        let out = plane.kubectl().unwrap().args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = kubectl(&["create", "namespace", "survives-restarts"]);
    assert!(ok, "{out}");
    let before = plane.pids();

    let etcd = plane.restart_etcd().unwrap();
    assert_ne!(etcd, before[0], "etcd was not replaced");
    assert!(wait_gone(&before[..1]), "the old etcd still runs");
    let (ok, out) = kubectl(&["get", "namespace", "survives-restarts"]);
    assert!(ok, "the namespace was lost with etcd's restart: {out}");

    let api = plane.restart_apiserver().unwrap();
    assert_ne!(api, before[1], "kube-apiserver was not replaced");
    assert!(wait_gone(&before[1..]), "the old kube-apiserver still runs");
    assert_eq!(plane.pids(), vec![etcd, api]);
    // The same URL, certificates and kubeconfig still work.
    let (ok, out) = kubectl(&["get", "namespace", "survives-restarts"]);
    assert!(ok, "after the apiserver restart: {out}");
    let (ok, out) = kubectl(&["create", "namespace", "after-restarts"]);
    assert!(ok, "{out}");
    plane.stop();
    assert!(
        wait_gone(&[etcd, api]),
        "a restarted process outlived stop()"
    );
}
