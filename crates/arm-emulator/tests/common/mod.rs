//! Engine-level harness: drives the request processor directly with a virtual clock (no sockets),
//! so LRO timing is exact and tests never wait on wall-clock time.
#![allow(dead_code)]

pub mod estate;

use arm_emulator::config::{self, Config};
use arm_emulator::engine::{Engine, Outcome, Request, Response};
use arm_emulator::jwt::SigningKey;
use arm_emulator::state::State;
use serde_json::{Value, json};
use std::sync::OnceLock;

pub const SUB: &str = config::DEV_SUBSCRIPTION;
pub const NET: &str = "2025-01-01";
pub const WEB: &str = "2024-11-01";
pub const COSMOS: &str = "2025-04-15";
pub const RG_API: &str = "2024-03-01";

/// RSA key generation is slow-ish; share one key across tests.
pub fn key() -> SigningKey {
    static PK8: OnceLock<Vec<u8>> = OnceLock::new();
    SigningKey::from_pkcs8(PK8.get_or_init(|| SigningKey::generate().pkcs8())).unwrap()
}

pub struct H {
    pub e: Engine,
    pub now: u64,
    pub token: String,
}

pub fn rg(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{name}")
}
pub fn vnet_id(rg_name: &str, v: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/virtualNetworks/{v}",
        rg(rg_name)
    )
}
pub fn subnet_id(rg_name: &str, v: &str, s: &str) -> String {
    format!("{}/subnets/{s}", vnet_id(rg_name, v))
}
pub fn site_id(name: &str) -> String {
    format!("{}/providers/Microsoft.Web/sites/{name}", rg("fhir"))
}
pub fn plan_id(name: &str) -> String {
    format!("{}/providers/Microsoft.Web/serverfarms/{name}", rg("fhir"))
}
pub fn cosmos_id(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.DocumentDB/databaseAccounts/{name}",
        rg("fhir")
    )
}
pub fn agw_id(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/applicationGateways/{name}",
        rg("hscn-net")
    )
}

impl H {
    pub fn with_config(cfg: Config) -> H {
        Self::with_state(cfg, State::default(), None)
    }

    pub fn with_state(cfg: Config, state: State, path: Option<std::path::PathBuf>) -> H {
        let now = arm_emulator::util::now_ms();
        let e = Engine::new(cfg, 1.0, "https://emu.test:8443".into(), key(), state, path);
        let token = e.mint(
            config::DEV_TENANT,
            config::DEV_CLIENT_ID,
            config::DEV_CLIENT_OBJECT_ID,
            "https://management.azure.com",
            now / 1000 + 100_000_000,
        );
        H { e, now, token }
    }

    /// Dev tenant plus resource groups `fhir` and `hscn-net` and VNet hscn-vnet 10.20.0.0/16.
    pub fn new() -> H {
        let mut h = H::with_config(Config::dev());
        h.ok(
            "PUT",
            &rg("fhir"),
            RG_API,
            Some(json!({"location": "uksouth"})),
        );
        h.ok(
            "PUT",
            &rg("hscn-net"),
            RG_API,
            Some(json!({"location": "uksouth"})),
        );
        h.ok("PUT", &vnet_id("hscn-net", "hscn-vnet"), NET, Some(json!({"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]}}})));
        h.settle();
        h
    }

    /// The estate seed from examples/ (wide open).
    pub fn estate() -> H {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/arm-emulator-estate.yaml"
        );
        H::with_config(Config::load(std::path::Path::new(path)).unwrap())
    }

    pub fn token_for(&self, client_id: &str, object_id: &str) -> String {
        self.e.mint(
            config::DEV_TENANT,
            client_id,
            object_id,
            "https://management.azure.com",
            self.now / 1000 + 100_000_000,
        )
    }

    pub fn raw(&mut self, req: Request) -> Response {
        match self.e.handle(&req, self.now).outcome {
            Outcome::Respond(r) => r,
            Outcome::Drop => Response {
                status: 0,
                headers: vec![],
                body: vec![],
            },
            Outcome::NeedJwks { url, .. } => panic!("unexpected JWKS fetch {url}"),
        }
    }

    pub fn call_as(
        &mut self,
        token: &str,
        method: &str,
        path: &str,
        api: &str,
        body: Option<Value>,
    ) -> Response {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut req = Request::new(method, &format!("{path}{sep}api-version={api}"))
            .with_header("Authorization", &format!("Bearer {token}"));
        if let Some(b) = body {
            req = req.with_json(&b);
        }
        self.raw(req)
    }

    pub fn call(&mut self, method: &str, path: &str, api: &str, body: Option<Value>) -> Response {
        let t = self.token.clone();
        self.call_as(&t, method, path, api, body)
    }

    /// A call that must succeed (2xx).
    pub fn ok(&mut self, method: &str, path: &str, api: &str, body: Option<Value>) -> Value {
        let r = self.call(method, path, api, body);
        assert!(
            r.status >= 200 && r.status < 300,
            "{method} {path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        r.json_body()
    }

    /// A call that must fail with this status and code.
    pub fn fails(
        &mut self,
        method: &str,
        path: &str,
        api: &str,
        body: Option<Value>,
        status: u16,
        code: &str,
    ) -> Value {
        let r = self.call(method, path, api, body);
        let v = r.json_body();
        assert_eq!(
            (r.status, v["error"]["code"].as_str().unwrap_or("")),
            (status, code),
            "{method} {path}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "message present"
        );
        v
    }

    pub fn advance(&mut self, secs: f64) {
        self.now += (secs * 1000.0) as u64;
    }

    /// Lets every running operation finish.
    pub fn settle(&mut self) {
        self.advance(2_000.0);
        self.e.state.advance(self.now);
    }

    /// Polls an absolute status URL (Azure-AsyncOperation or Location) through the engine.
    pub fn poll(&mut self, url: &str) -> Response {
        let path = url
            .strip_prefix("https://emu.test:8443")
            .expect("absolute URL on the emulator");
        let t = self.token.clone();
        self.raw(Request::new("GET", path).with_header("Authorization", &format!("Bearer {t}")))
    }

    pub fn exposure(&mut self) -> Value {
        self.raw(Request::new("GET", "/_emulator/exposure"))
            .json_body()
    }

    pub fn put_subnet(&mut self, name: &str, props: Value) -> Response {
        self.call(
            "PUT",
            &subnet_id("hscn-net", "hscn-vnet", name),
            NET,
            Some(json!({"properties": props})),
        )
    }
}

pub fn sources(target: &Value) -> Vec<String> {
    target["reachableFrom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap().to_string())
        .collect()
}
