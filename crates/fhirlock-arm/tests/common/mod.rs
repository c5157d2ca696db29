//! Test harness: the arm-emulator in-process (HTTPS on 127.0.0.1:0, temp data dir; no binary to
//! build), with its ready line and control API read through `fhirlock-testkit` as every other
//! harness does, a federated-token issuer, and client constructors.
#![allow(dead_code)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use fhirlock_arm::{ArmClient, ArmConfig, Cloud, CredentialConfig, RequestEvent, RequestObserver};
use fhirlock_testkit::{Control, Ready};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[allow(unused_imports)]
pub use arm_emulator::config::{
    DEV_CLIENT_ID, DEV_CLIENT_SECRET, OUTSIDER_CLIENT_ID, OUTSIDER_CLIENT_SECRET,
};

pub const RG_API: &str = "2021-04-01";
pub const NET_API: &str = "2024-05-01";
pub const ISSUER: &str = "https://issuer.fhirlock.test";
pub const WI_SUBJECT: &str = "system:serviceaccount:fhirlock-system:fhirlock";

pub struct Emulator {
    pub ready: Ready,
    running: arm_emulator::server::Running,
    control: Control,
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.running.stop();
    }
}

/// A federated-token issuer standing in for the Kubernetes service-account issuer: an RSA key,
/// its JWKS file, and RS256-signed tokens. Written here, independently of the emulator's verifier.
pub struct Issuer {
    key: KeyPair,
    kid: String,
    pub jwks_path: PathBuf,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Issuer {
    pub fn new(dir: &Path) -> Issuer {
        let key = KeyPair::generate(KeySize::Rsa2048).expect("rsa keygen");
        let kid = "test-key-1".to_string();
        let pk: PublicKeyComponents<Vec<u8>> = key.public_key().into();
        let strip = |b: &[u8]| {
            let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
            b[i..].to_vec()
        };
        let jwks = json!({"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":kid,
            "n": b64(&strip(&pk.n)), "e": b64(&strip(&pk.e))}]});
        let jwks_path = dir.join("jwks.json");
        std::fs::write(&jwks_path, jwks.to_string()).unwrap();
        Issuer {
            key,
            kid,
            jwks_path,
        }
    }

    /// A service-account-style token for `sub`, valid for an hour.
    pub fn token(&self, sub: &str) -> String {
        let header = json!({"alg":"RS256","typ":"JWT","kid":self.kid});
        let t = now();
        let claims = json!({"iss":ISSUER,"sub":sub,"aud":["api://AzureADTokenExchange"],
            "iat":t,"nbf":t,"exp":t+3600});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{input}.{}", b64(&sig))
    }
}

impl Emulator {
    /// The development tenant, at time scale 0.01 (a 10 s subnet operation takes 0.1 s).
    pub async fn start() -> Emulator {
        Self::start_with(None).await
    }

    /// With the dev tenant plus a federated credential on the operator client trusting `issuer`.
    pub async fn start_with_issuer(issuer_jwks: &Path) -> Emulator {
        let mut cfg = serde_json::to_value(arm_emulator::config::Config::dev()).unwrap();
        let fed = json!([{"issuer": ISSUER, "subject": WI_SUBJECT,
            "audiences": ["api://AzureADTokenExchange"], "jwksFile": issuer_jwks}]);
        let clients = cfg["tenants"][0]["clients"].as_array_mut().unwrap();
        let dev = clients
            .iter_mut()
            .find(|c| c["clientId"] == DEV_CLIENT_ID)
            .unwrap();
        dev["federatedCredentials"] = fed;
        Self::start_with(Some(cfg)).await
    }

    /// Real-time operations (time scale 1) where VNets finish at once but subnets and Cosmos
    /// accounts take ten minutes: a second write during one is a genuine conflict.
    pub async fn start_with_slow_operations() -> Emulator {
        let mut cfg = serde_json::to_value(arm_emulator::config::Config::dev()).unwrap();
        cfg["lro"]["durations"]["Microsoft.Network/virtualNetworks"] = json!(0.0);
        cfg["lro"]["durations"]["Microsoft.Network/virtualNetworks/subnets"] = json!(600.0);
        cfg["lro"]["durations"]["Microsoft.DocumentDB/databaseAccounts"] = json!(600.0);
        cfg["lro"]["durations"]["resourceGroups"] = json!(0.0);
        Self::start_scaled(Some(cfg), 1.0).await
    }

    async fn start_with(config: Option<Value>) -> Emulator {
        Self::start_scaled(config, 0.01).await
    }

    async fn start_scaled(config: Option<Value>, time_scale: f64) -> Emulator {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let config = config.map(|c| {
            let p = path.join("emulator.json");
            std::fs::write(&p, c.to_string()).unwrap();
            p
        });
        let running = arm_emulator::server::start(arm_emulator::server::Options {
            addr: "127.0.0.1:0".into(),
            data_dir: path.join("data"),
            config,
            time_scale,
            hostnames: vec![],
        })
        .await
        .expect("emulator starts");
        let ready = Ready::parse(&running.ready_line()).unwrap();
        let control = Control::new(&ready).unwrap();
        Emulator {
            ready,
            running,
            control,
            _dir: dir,
            dir: path,
        }
    }

    pub fn cloud(&self) -> Cloud {
        self.ready.cloud().unwrap()
    }

    pub fn config(&self, credential: CredentialConfig) -> ArmConfig {
        self.ready.arm_config(credential, "fhirlock-test").unwrap()
    }

    pub fn secret_credential(&self, client_id: &str, secret: &str) -> CredentialConfig {
        self.ready.secret_credential(client_id, secret)
    }

    /// The operator's client (client secret), with a recording observer.
    pub fn operator(&self) -> (ArmClient, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let client =
            ArmClient::new(self.config(self.secret_credential(DEV_CLIENT_ID, DEV_CLIENT_SECRET)))
                .unwrap()
                .with_observer(rec.clone());
        (client, rec)
    }

    /// Injects one fault rule (see docs/emulator.md).
    pub async fn fault(&self, rule: Value) {
        self.control.faults(rule).await.unwrap();
    }

    /// An ARM access token for the operator client, expiring `expires_in` seconds from now
    /// (negative: already expired), minted by the emulator's control API.
    pub async fn mint_token(&self, expires_in: i64) -> String {
        let v = self
            .control
            .call(
                "POST",
                "/_emulator/tokens",
                Some(json!({"clientId": DEV_CLIENT_ID, "audience": "https://management.azure.com", "expiresInSeconds": expires_in})),
            )
            .await
            .unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    pub async fn stats(&self) -> Value {
        self.control.stats().await.unwrap()
    }

    /// Total ARM requests the emulator counted.
    pub async fn total(&self) -> u64 {
        self.stats().await["total"].as_u64().unwrap()
    }

    pub async fn reset_stats(&self) {
        self.control.reset_stats().await.unwrap();
    }

    pub fn rg(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{name}",
            self.ready.subscription_id
        )
    }

    pub fn vnet(&self, rg: &str, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.Network/virtualNetworks/{name}",
            self.rg(rg)
        )
    }
}

/// Records every request the client reports.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Recorded>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub resource_type: String,
    pub status: Option<u16>,
    pub poll: bool,
    pub attempt: u32,
    pub reads_left: Option<u32>,
    pub writes_left: Option<u32>,
}

impl RequestObserver for Recorder {
    fn on_request(&self, e: &RequestEvent<'_>) {
        self.events.lock().unwrap().push(Recorded {
            method: e.method.to_string(),
            resource_type: e.resource_type.to_string(),
            status: e.status,
            poll: e.poll,
            attempt: e.attempt,
            reads_left: e.rate_limit.reads,
            writes_left: e.rate_limit.writes,
        });
    }
}

impl Recorder {
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

pub fn vnet_body(prefix: &str, subnets: Value) -> Value {
    json!({"location":"uksouth","properties":{"addressSpace":{"addressPrefixes":[prefix]},"subnets":subnets}})
}
