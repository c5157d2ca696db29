//! End to end over real HTTPS: TLS with the generated CA, the Entra token endpoint (secret and
//! federated assertion), ARM calls with the issued token, and kill -9 + restart of the binary.

use arm_emulator::client;
use arm_emulator::config::{self, Config, FederatedCredential};
use arm_emulator::jwt::{SigningKey, b64};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const SUB: &str = config::DEV_SUBSCRIPTION;
const T: &str = config::DEV_TENANT;

struct Emu {
    base: String,
    tls: std::sync::Arc<rustls::ClientConfig>,
}

impl Emu {
    fn new(ready: &Value) -> Emu {
        let ca = ready["ca_path"].as_str().unwrap();
        Emu {
            base: ready["arm_endpoint"].as_str().unwrap().to_string(),
            tls: arm_emulator::tls::client_config(Path::new(ca)).unwrap(),
        }
    }

    async fn req(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> client::ClientResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        client::request(
            self.tls.clone(),
            method,
            &format!("{}{path}", self.base),
            &headers,
            body,
        )
        .await
        .unwrap()
    }

    async fn token_form(&self, form: &str) -> client::ClientResponse {
        client::request(
            self.tls.clone(),
            "POST",
            &format!("{}/{T}/oauth2/v2.0/token", self.base),
            &[("content-type", "application/x-www-form-urlencoded")],
            form.as_bytes().to_vec(),
        )
        .await
        .unwrap()
    }

    async fn secret_token(&self, client_id: &str, secret: &str) -> String {
        let r = self.token_form(&format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default")).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["token_type"], "Bearer");
        assert!(v["expires_in"].as_u64().unwrap() > 3000);
        v["access_token"].as_str().unwrap().to_string()
    }
}

async fn start_in_process(
    cfg_file: Option<&Path>,
    dir: &Path,
) -> (arm_emulator::server::Running, Emu) {
    let running = arm_emulator::server::start(arm_emulator::server::Options {
        addr: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        config: cfg_file.map(Path::to_path_buf),
        time_scale: 0.01,
        hostnames: vec![],
    })
    .await
    .unwrap();
    let ready: Value = serde_json::from_str(&running.ready_line()).unwrap();
    let emu = Emu::new(&ready);
    (running, emu)
}

#[tokio::test]
async fn https_only_with_generated_ca_and_secret_token_flow() {
    let dir = tempfile::tempdir().unwrap();
    let (running, emu) = start_in_process(None, dir.path()).await;
    assert!(dir.path().join("ca.pem").exists());
    let ready: Value = serde_json::from_str(&running.ready_line()).unwrap();
    assert_eq!(ready["authority_host"], format!("{}/", emu.base));
    assert_eq!(ready["tenant_id"], T);

    // Plain HTTP gets no HTTP answer.
    let mut s = std::net::TcpStream::connect(running.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(b"GET /_emulator/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "plain HTTP must not be served"
    );

    let oidc = emu
        .req(
            "GET",
            &format!("/{T}/v2.0/.well-known/openid-configuration"),
            None,
            None,
        )
        .await
        .json();
    assert_eq!(
        oidc["token_endpoint"],
        format!("{}/{T}/oauth2/v2.0/token", emu.base)
    );
    assert_eq!(oidc["issuer"], format!("{}/{T}/v2.0", emu.base));

    let bad = emu.token_form(&format!("grant_type=client_credentials&client_id={}&client_secret=wrong&scope=https%3A%2F%2Fmanagement.azure.com%2F.default", config::DEV_CLIENT_ID)).await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["error"], "invalid_client");
    assert!(
        bad.json()["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215")
    );
    let scope = emu.token_form(&format!("grant_type=client_credentials&client_id={}&client_secret={}&scope=https%3A%2F%2Fmanagement.azure.com%2Fuser.read", config::DEV_CLIENT_ID, config::DEV_CLIENT_SECRET)).await;
    assert_eq!(scope.json()["error"], "invalid_scope");

    let token = emu
        .secret_token(config::DEV_CLIENT_ID, config::DEV_CLIENT_SECRET)
        .await;
    let r = emu
        .req(
            "PUT",
            &format!("/subscriptions/{SUB}/resourceGroups/rg1?api-version=2024-03-01"),
            Some(&token),
            Some(&json!({"location": "uksouth"})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.header("x-ms-request-id").is_some());
    let r = emu
        .req(
            "GET",
            &format!("/subscriptions/{SUB}/resourceGroups/rg1?api-version=2024-03-01"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "AuthenticationFailed");

    // Fault injection over the wire: a dropped connection, then latency.
    let rg1 = format!("/subscriptions/{SUB}/resourceGroups/rg1?api-version=2024-03-01");
    emu.req(
        "POST",
        "/_emulator/faults",
        None,
        Some(
            &json!([{"method": "GET", "path": "*/resourceGroups/rg1", "dropConnection": true},
        {"method": "GET", "path": "*/resourceGroups/rg1", "latencyMs": 300}]),
        ),
    )
    .await;
    let auth = format!("Bearer {token}");
    let dropped = client::request(
        emu.tls.clone(),
        "GET",
        &format!("{}{rg1}", emu.base),
        &[("authorization", auth.as_str())],
        vec![],
    )
    .await;
    assert!(dropped.is_err(), "connection closed without an answer");
    let t0 = std::time::Instant::now();
    assert_eq!(emu.req("GET", &rg1, Some(&token), None).await.status, 200);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(300));
    running.stop();
}

fn jwks_of(key: &SigningKey) -> Value {
    json!({"keys": [key.jwk()]})
}

fn assertion(key: &SigningKey, iss: &str, sub: &str, aud: &str, exp_in: i64) -> String {
    let now = arm_emulator::util::now_ms() as i64 / 1000;
    key.sign(
        &json!({"iss": iss, "sub": sub, "aud": [aud], "iat": now, "nbf": now, "exp": now + exp_in}),
    )
}

#[tokio::test]
async fn federated_client_assertion_is_verified_against_the_issuer_keys() {
    let dir = tempfile::tempdir().unwrap();
    let issuer_key = SigningKey::generate();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks_of(&issuer_key).to_string()).unwrap();
    let issuer = "https://kubernetes.default.svc.cluster.local";
    let subject = "system:serviceaccount:fhirlock-system:fhirlock";
    let mut cfg = Config::dev();
    cfg.tenants[0].clients[0]
        .federated_credentials
        .push(FederatedCredential {
            issuer: issuer.into(),
            subject: subject.into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
            jwks_file: Some(jwks_path.display().to_string()),
            jwks_url: None,
            jwks_bearer_token_file: None,
            ca_file: None,
        });
    let cfg_path = dir.path().join("cfg.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let data = dir.path().join("data");
    let (running, emu) = start_in_process(Some(&cfg_path), &data).await;
    let exchange = |a: String| {
        format!(
            "grant_type=client_credentials&client_id={}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}",
            config::DEV_CLIENT_ID
        )
    };
    let good = emu
        .token_form(&exchange(assertion(
            &issuer_key,
            issuer,
            subject,
            "api://AzureADTokenExchange",
            3600,
        )))
        .await;
    assert_eq!(good.status, 200, "{}", String::from_utf8_lossy(&good.body));
    let token = good.json()["access_token"].as_str().unwrap().to_string();
    let r = emu
        .req(
            "GET",
            &format!("/subscriptions/{SUB}/resourcegroups?api-version=2024-03-01"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200);

    let cases: Vec<(String, &str)> = vec![
        (
            assertion(
                &issuer_key,
                issuer,
                "system:serviceaccount:other:sa",
                "api://AzureADTokenExchange",
                3600,
            ),
            "AADSTS70021",
        ),
        (
            assertion(
                &issuer_key,
                "https://evil.example",
                subject,
                "api://AzureADTokenExchange",
                3600,
            ),
            "AADSTS70021",
        ),
        (
            assertion(&issuer_key, issuer, subject, "api://Other", 3600),
            "AADSTS70021",
        ),
        (
            assertion(
                &issuer_key,
                issuer,
                subject,
                "api://AzureADTokenExchange",
                -3600,
            ),
            "AADSTS700024",
        ),
        (
            assertion(
                &SigningKey::generate(),
                issuer,
                subject,
                "api://AzureADTokenExchange",
                3600,
            ),
            "AADSTS700027",
        ),
        ("garbage".to_string(), "AADSTS50027"),
    ];
    for (a, code) in cases {
        let r = emu.token_form(&exchange(a)).await;
        assert_eq!(r.status, 400);
        assert!(
            r.json()["error_description"]
                .as_str()
                .unwrap()
                .starts_with(code),
            "{code}: {}",
            r.json()
        );
    }
    running.stop();
}

#[tokio::test]
async fn federated_assertion_keys_can_be_fetched_from_the_issuer_over_https() {
    // The emulator's own discovery keys stand in for a kube-apiserver's /openid/v1/jwks.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("https://127.0.0.1:{port}");
    let mut cfg = Config::dev();
    cfg.tenants[0].clients[0]
        .federated_credentials
        .push(FederatedCredential {
            issuer: base.clone(),
            subject: "system:serviceaccount:ns:sa".into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
            jwks_file: None,
            jwks_url: Some(format!("{base}/{T}/discovery/v2.0/keys")),
            jwks_bearer_token_file: None,
            ca_file: None,
        });
    // Same issuer, another subject whose key fetch must present a bearer token from a file.
    cfg.tenants[0].clients[0]
        .federated_credentials
        .push(FederatedCredential {
            issuer: base.clone(),
            subject: "system:serviceaccount:ns:needs-token".into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
            jwks_file: None,
            jwks_url: Some(format!("{base}/{T}/discovery/v2.0/keys?with-token")),
            jwks_bearer_token_file: Some(dir.path().join("token").display().to_string()),
            ca_file: None,
        });
    let cfg_path = dir.path().join("cfg.yaml");
    std::fs::write(&cfg_path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let running = arm_emulator::server::start(arm_emulator::server::Options {
        addr: format!("127.0.0.1:{port}"),
        data_dir: dir.path().join("data"),
        config: Some(cfg_path),
        time_scale: 0.01,
        hostnames: vec![],
    })
    .await
    .unwrap();
    let emu = Emu::new(&serde_json::from_str(&running.ready_line()).unwrap());
    let a = {
        let e = running.engine.lock().unwrap();
        let now = arm_emulator::util::now_ms() / 1000;
        e.key.sign(&json!({"iss": base, "sub": "system:serviceaccount:ns:sa", "aud": "api://AzureADTokenExchange", "iat": now, "exp": now + 600}))
    };
    let r = emu
        .token_form(&format!("grant_type=client_credentials&client_id={}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}", config::DEV_CLIENT_ID))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let _ = b64(b"x");

    let sign = |sub: &str| {
        let e = running.engine.lock().unwrap();
        let now = arm_emulator::util::now_ms() / 1000;
        e.key.sign(&json!({"iss": base, "sub": sub, "aud": "api://AzureADTokenExchange", "iat": now, "exp": now + 600}))
    };
    let form = |a: String| {
        format!(
            "grant_type=client_credentials&client_id={}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}",
            config::DEV_CLIENT_ID
        )
    };
    // The bearer-token file is read for the fetch: missing, the keys cannot be had; present, they can.
    let r = emu
        .token_form(&form(sign("system:serviceaccount:ns:needs-token")))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("could not obtain the issuer's keys"),
        "{}",
        r.json()
    );
    std::fs::write(dir.path().join("token"), "kube-token\n").unwrap();
    let r = emu
        .token_form(&form(sign("system:serviceaccount:ns:needs-token")))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    running.stop();
}

// ------------------------------------------------------------------ kill -9

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(data: &Path, cfg: &Path) -> (Proc, Value) {
    spawn_with(data, &["--config".as_ref(), cfg.as_os_str()])
}

fn spawn_with(data: &Path, extra: &[&std::ffi::OsStr]) -> (Proc, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arm-emulator"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .args(["--time-scale", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
    (Proc(child), ready)
}

#[tokio::test]
async fn kill_9_during_a_long_running_operation_loses_nothing_and_the_operation_completes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cfg = Config::dev();
    cfg.lro
        .durations
        .insert("Microsoft.Network/virtualNetworks".into(), 0.0);
    cfg.lro
        .durations
        .insert("Microsoft.Network/virtualNetworks/subnets".into(), 3.0);
    let cfg_path = dir.path().join("cfg.yaml");
    std::fs::write(&cfg_path, serde_yaml::to_string(&cfg).unwrap()).unwrap();

    let (mut p1, ready) = spawn(&data, &cfg_path);
    let emu = Emu::new(&ready);
    let token = emu
        .secret_token(config::DEV_CLIENT_ID, config::DEV_CLIENT_SECRET)
        .await;
    let rg = format!("/subscriptions/{SUB}/resourceGroups/net");
    assert_eq!(
        emu.req(
            "PUT",
            &format!("{rg}?api-version=2024-03-01"),
            Some(&token),
            Some(&json!({"location": "uksouth"}))
        )
        .await
        .status,
        201
    );
    let vnet = format!("{rg}/providers/Microsoft.Network/virtualNetworks/v");
    assert_eq!(emu.req("PUT", &format!("{vnet}?api-version=2025-01-01"), Some(&token), Some(&json!({"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}}))).await.status, 201);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = emu
        .req(
            "PUT",
            &format!("{vnet}/subnets/a?api-version=2025-01-01"),
            Some(&token),
            Some(&json!({"properties": {"addressPrefix": "10.0.1.0/24"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let status_url = r.header("azure-asyncoperation").unwrap().to_string();
    let ca_before = std::fs::read(data.join("ca.pem")).unwrap();

    // SIGKILL: no shutdown code runs.
    p1.0.kill().unwrap();
    p1.0.wait().unwrap();

    let (_p2, ready2) = spawn(&data, &cfg_path);
    assert_eq!(
        std::fs::read(data.join("ca.pem")).unwrap(),
        ca_before,
        "the CA survives, so clients keep trusting it"
    );
    let emu2 = Emu::new(&ready2);
    // Tokens issued before the restart stay valid (the signing key is in the data directory).
    let path = status_url
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap();
    let mut status = String::new();
    for _ in 0..100 {
        let s = emu2.req("GET", &path, Some(&token), None).await.json();
        status = s["status"].as_str().unwrap_or("").to_string();
        if status != "InProgress" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "Succeeded");
    let sub = emu2
        .req(
            "GET",
            &format!("{vnet}/subnets/a?api-version=2025-01-01"),
            Some(&token),
            None,
        )
        .await
        .json();
    assert_eq!(sub["properties"]["provisioningState"], "Succeeded");
    assert_eq!(sub["properties"]["addressPrefix"], "10.0.1.0/24");
    assert_eq!(
        emu2.req(
            "GET",
            &format!("{rg}?api-version=2024-03-01"),
            Some(&token),
            None
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn binary_without_config_starts_the_development_tenant_and_prints_the_ready_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_p, ready) = spawn_with(dir.path(), &[]);
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["tenant_id"], T);
    assert_eq!(ready["subscription_id"], SUB);
    assert_eq!(
        ready["authority_host"],
        format!("{}/", ready["arm_endpoint"].as_str().unwrap())
    );
    assert_eq!(
        Path::new(ready["ca_path"].as_str().unwrap()),
        dir.path().join("ca.pem")
    );
    let emu = Emu::new(&ready);
    let token = emu
        .secret_token(config::PORTAL_CLIENT_ID, config::PORTAL_CLIENT_SECRET)
        .await;
    let r = emu
        .req(
            "PUT",
            &format!("/subscriptions/{SUB}/resourceGroups/x?api-version=2024-03-01"),
            Some(&token),
            Some(&json!({"location": "uksouth"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let outsider = emu
        .secret_token(config::OUTSIDER_CLIENT_ID, config::OUTSIDER_CLIENT_SECRET)
        .await;
    assert_eq!(
        emu.req(
            "GET",
            &format!("/subscriptions/{SUB}/resourceGroups/x?api-version=2024-03-01"),
            Some(&outsider),
            None
        )
        .await
        .status,
        403
    );
}
