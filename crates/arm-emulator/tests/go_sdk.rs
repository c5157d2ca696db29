//! The emulator against a real third-party client: the Azure SDK for Go (azidentity over MSAL for
//! Go, and armresources), as Azure Service Operator uses it. `hack/azidentity-check` gets a token
//! with `ClientSecretCredential` or `ClientAssertionCredential` and lists resource groups; it is
//! built once through `hack/lib/go-tool.sh` (cached, like the other Go tools) and run against the
//! emulator binary. What the SDK sends (`scope=<resource>/.default openid offline_access profile`,
//! `client_info=1`) must be accepted, and a refusal must reach the SDK's error as Entra words it.

use arm_emulator::config::{self, Config, FederatedCredential, SeedResource};
use arm_emulator::jwt::SigningKey;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const SUBJECT: &str =
    "system:serviceaccount:azureserviceoperator-system:azureserviceoperator-default";
const RG: &str = "go-sdk-rg";

/// The built tool (`hack/azidentity-check/build.sh` prints its cache directory last).
fn tool() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let script = root.join("hack/azidentity-check/build.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(out.status.success(), "{} failed", script.display());
        let dir = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        PathBuf::from(dir).join("azidentity-check")
    })
}

struct Emulator {
    child: Child,
    ready: Value,
    _dir: tempfile::TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The development tenant, one seeded resource group, and a federated credential on the operator
/// client whose issuer keys are `issuer_key`'s.
fn start(issuer_key: &SigningKey) -> Emulator {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [issuer_key.jwk()]}).to_string()).unwrap();
    let mut cfg = Config::dev();
    cfg.tenants[0].clients[0]
        .federated_credentials
        .push(FederatedCredential {
            issuer: ISSUER.into(),
            subject: SUBJECT.into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
            jwks_file: Some(jwks.display().to_string()),
            jwks_url: None,
            jwks_bearer_token_file: None,
            ca_file: None,
        });
    cfg.seed.push(SeedResource {
        id: format!(
            "/subscriptions/{}/resourceGroups/{RG}",
            config::DEV_SUBSCRIPTION
        ),
        body: json!({"location": "uksouth"}),
    });
    let cfg_path = dir.path().join("cfg.yaml");
    std::fs::write(&cfg_path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_arm-emulator"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&cfg_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready = serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
    Emulator {
        child,
        ready,
        _dir: dir,
    }
}

/// Runs the tool with the emulator's endpoints, CA and tenant, plus `creds`.
fn check(emu: &Emulator, client_id: &str, creds: &[&str]) -> Output {
    let r = |k: &str| emu.ready[k].as_str().unwrap().to_string();
    Command::new(tool())
        .args([
            "-authority",
            &r("authority_host"),
            "-arm",
            &r("arm_endpoint"),
        ])
        .args(["-ca", &r("ca_path"), "-tenant", &r("tenant_id")])
        .args([
            "-subscription",
            &r("subscription_id"),
            "-client-id",
            client_id,
        ])
        .args(creds)
        .output()
        .unwrap()
}

fn assertion(key: &SigningKey, subject: &str) -> String {
    let now = arm_emulator::util::now_ms() / 1000;
    key.sign(
        &json!({"iss": ISSUER, "sub": subject, "aud": ["api://AzureADTokenExchange"],
        "iat": now, "nbf": now, "exp": now + 600}),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn go_sdk_client_secret_credential_gets_a_token_and_lists_resource_groups() {
    let emu = start(&SigningKey::generate());
    let out = check(
        &emu,
        config::DEV_CLIENT_ID,
        &["-secret", config::DEV_CLIENT_SECRET],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("OK ClientSecretCredential resourceGroups={RG}")
    );
}

#[test]
fn go_sdk_client_assertion_credential_exchanges_a_federated_token() {
    let key = SigningKey::generate();
    let emu = start(&key);
    let file = emu._dir.path().join("federated-token");
    std::fs::write(&file, assertion(&key, SUBJECT)).unwrap();
    let path = file.display().to_string();
    let out = check(&emu, config::DEV_CLIENT_ID, &["-assertion-file", &path]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("OK ClientAssertionCredential resourceGroups={RG}")
    );
}

#[test]
fn go_sdk_reports_what_entra_and_arm_refuse() {
    let key = SigningKey::generate();
    let emu = start(&key);
    let other_subject = emu._dir.path().join("other-subject");
    std::fs::write(
        &other_subject,
        assertion(&key, "system:serviceaccount:default:other"),
    )
    .unwrap();
    let other_subject = other_subject.display().to_string();
    // (client, credential arguments, what the SDK's error must carry)
    let cases: [(&str, [&str; 2], &str); 4] = [
        (
            config::DEV_CLIENT_ID,
            ["-secret", "not-the-secret"],
            "AADSTS7000215",
        ),
        (
            "6f1c2a52-0000-4000-8000-00000000cfff",
            ["-secret", config::DEV_CLIENT_SECRET],
            "AADSTS700016",
        ),
        (
            config::DEV_CLIENT_ID,
            ["-assertion-file", &other_subject],
            "AADSTS70021",
        ),
        // A token, but no role assignment: ARM's 403 reaches the SDK.
        (
            config::OUTSIDER_CLIENT_ID,
            ["-secret", config::OUTSIDER_CLIENT_SECRET],
            "AuthorizationFailed",
        ),
    ];
    for (client, creds, want) in cases {
        let out = check(&emu, client, &creds);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{want}: {stderr}");
        assert!(stderr.contains(want), "{want}: {stderr}");
        assert!(text(&out.stdout).is_empty(), "{want}");
    }
}
