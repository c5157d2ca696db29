//! Resilience (issue 7): the operator under the emulator's fault matrix, random SIGKILLs, and
//! restarts of kube-apiserver, etcd and the emulator. Every scenario must end converged, with no
//! duplicate Azure resource, no lost out-of-band field and a bounded request rate.
//!
//! The quick version runs in `make test`; `FHIRLOCK_SOAK=1` (`make soak`) runs the long one: every
//! fault kind in every phase, more trials, more endpoints, more kills, and each restart on its own.
//! Figures are printed as `resilience:` lines (`cargo test --test resilience -- --nocapture`).
//!
//! Tests run one at a time (an operator acts on every namespace it sees); each has its own
//! emulator and namespace. The restart test has its own control plane, so restarting it disturbs
//! no other test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fhirlock_arm::{ArmClient, ArmError, OperationStatus, WriteOutcome};
use fhirlock_tests::emulator::{Emulator, SUBSCRIPTION};
use fhirlock_tests::operator::{Operator, tenancy};
use serde_json::{Value, json};
use testenv::ControlPlane;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn soak() -> bool {
    std::env::var("FHIRLOCK_SOAK").is_ok_and(|v| v == "1")
}

const NET: &str = "2025-01-01";
const WEB: &str = "2024-11-01";
const COSMOS: &str = "2024-11-15";
const PORTAL_OBJECT: &str = "6f1c2a52-0000-4000-8000-00000000b002";
/// A hot loop breaks this; a healthy operator (7 reads per resync of 3 s, polls at the
/// operation's Retry-After, backoff on errors) stays well under it.
const MAX_PER_MINUTE_PER_ENDPOINT: f64 = 600.0;

/// The worst requests-per-minute-per-endpoint seen in this process, for the report.
static WORST_RPM: Mutex<f64> = Mutex::new(0.0);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn rg(name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}")
}

fn vnet() -> String {
    format!(
        "{}/providers/Microsoft.Network/virtualNetworks/hscn-vnet",
        rg("hscn-net")
    )
}

/// A small deterministic generator (xorshift), seeded from `FHIRLOCK_SEED` or the clock; the
/// seed is printed so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn new(what: &str) -> Rng {
        let seed = std::env::var("FHIRLOCK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("resilience: {what}: seed {seed} (FHIRLOCK_SEED={seed} replays it)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

// ---- the cluster -------------------------------------------------------------------------------

/// kubectl against one control plane (the shared one or a dedicated one).
struct Cluster<'a>(&'a ControlPlane);

impl Cluster<'_> {
    fn kubectl(&self, args: &[&str]) -> Output {
        self.0
            .kubectl()
            .unwrap()
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// kubectl, retried while the control plane is restarting.
    fn ok(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.kubectl(args);
            if out.status.success() {
                return text(&out.stdout);
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {args:?} failed:\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn install_crds(&self) {
        let crds = testenv::workspace_root().join("crds");
        self.ok(&["apply", "-f", crds.to_str().unwrap()]);
        self.ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/securedfhirendpoints.fhirlock.io",
        ]);
        self.ok(&["api-resources", "--api-group=fhirlock.io"]);
    }

    fn namespace(&self, name: &str) -> String {
        let out = self.kubectl(&["create", "namespace", name]);
        let err = text(&out.stderr);
        assert!(
            out.status.success() || err.contains("AlreadyExists"),
            "creating namespace {name}: {err}"
        );
        name.to_owned()
    }

    fn apply(&self, obj: &Value, dir: &Path) {
        let file = dir.join(format!(
            "{}-{}.yaml",
            obj["kind"].as_str().unwrap_or("object"),
            obj["metadata"]["name"].as_str().unwrap()
        ));
        std::fs::write(&file, serde_yaml::to_string(obj).unwrap()).unwrap();
        self.ok(&["apply", "-f", file.to_str().unwrap()]);
    }

    fn tls_secret(&self, ns: &str, name: &str, host: &str, dir: &Path) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        use base64_like::encode;
        let obj = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns},
            "data": {"tls.crt": encode(cert.pem().as_bytes()), "tls.key": encode(key.serialize_pem().as_bytes())},
        });
        self.apply(&obj, dir);
    }

    /// The endpoint, `None` when it does not exist or the apiserver does not answer.
    fn get(&self, ns: &str, name: &str) -> Option<Value> {
        let out = self.kubectl(&["get", "sfe", name, "-n", ns, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    fn gone(&self, ns: &str, name: &str) -> bool {
        let out = self.kubectl(&["get", "sfe", name, "-n", ns]);
        !out.status.success() && text(&out.stderr).contains("NotFound")
    }
}

/// Standard base64 without another dependency.
mod base64_like {
    pub fn encode(b: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

fn is_ready(obj: &Value) -> bool {
    condition(obj, "Ready").is_some_and(|c| c["status"] == "True")
        && obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        && obj["status"]["pendingOperations"]
            .as_array()
            .is_none_or(|p| p.is_empty())
}

// ---- the estate: several endpoints in one emulator ----------------------------------------------

/// Endpoint `i`: its own site, plan and Cosmos account (resource group `fhir`), its own gateway,
/// and its own pair of subnets in the shared VNet.
#[derive(Clone, Copy)]
struct Ep(usize);

impl Ep {
    fn name(self) -> String {
        format!("records-{}", self.0)
    }
    fn site(self) -> String {
        format!(
            "{}/providers/Microsoft.Web/sites/fhir-server-{}",
            rg("fhir"),
            self.0
        )
    }
    fn cosmos(self) -> String {
        format!(
            "{}/providers/Microsoft.DocumentDB/databaseAccounts/fhir-cosmos-{}",
            rg("fhir"),
            self.0
        )
    }
    fn gateway_name(self) -> String {
        format!("agw-fhir-{}", self.0)
    }
    fn gateway(self) -> String {
        format!(
            "{}/providers/Microsoft.Network/applicationGateways/{}",
            rg("fhir"),
            self.gateway_name()
        )
    }
    fn agw_subnet(self) -> String {
        format!("snet-agw-{}", self.0)
    }
    fn int_subnet(self) -> String {
        format!("snet-int-{}", self.0)
    }
    fn subnet_id(self, name: &str) -> String {
        format!("{}/subnets/{name}", vnet())
    }
    fn host(self) -> String {
        format!("fhir{}.trust.nhs.uk", self.0)
    }
    fn manifest(self, ns: &str, policy: &str) -> Value {
        let mut obj: Value = serde_yaml::from_str(
            &std::fs::read_to_string(testenv::workspace_root().join("examples/fhir-endpoint.yaml"))
                .unwrap(),
        )
        .unwrap();
        let i = self.0;
        obj["metadata"]["name"] = json!(self.name());
        obj["metadata"]["namespace"] = json!(ns);
        let s = &mut obj["spec"];
        s["network"]["gatewaySubnet"] =
            json!({"name": self.agw_subnet(), "addressPrefix": format!("10.20.{}.0/26", 10 + i)});
        s["network"]["integrationSubnet"] =
            json!({"name": self.int_subnet(), "addressPrefix": format!("10.20.{}.0/27", 40 + i)});
        s["appService"]["id"] = json!(self.site());
        s["cosmosDb"]["id"] = json!(self.cosmos());
        s["gateway"]["name"] = json!(self.gateway_name());
        s["gateway"]["privateIPAddress"] = json!(format!("10.20.{}.10", 10 + i));
        s["gateway"]["hostName"] = json!(self.host());
        s["gateway"]["tls"]["secretRef"]["name"] = json!(format!("tls-{i}"));
        s["deletionPolicy"] = json!(policy);
        obj
    }
}

/// `examples/arm-emulator-estate.yaml` with the site, plan and Cosmos account repeated per
/// endpoint (renamed `-0`, `-1`, …).
fn estate_config(n: usize, dir: &Path) -> PathBuf {
    let mut cfg: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            testenv::workspace_root().join("examples/arm-emulator-estate.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let seeds = cfg["seed"].as_array().unwrap().clone();
    let mut out = Vec::new();
    for s in &seeds {
        let id = s["id"].as_str().unwrap();
        let per_endpoint = ["/fhir-plan", "/fhir-server", "/fhir-cosmos"]
            .iter()
            .any(|t| id.ends_with(t));
        if !per_endpoint {
            out.push(s.clone());
            continue;
        }
        for i in 0..n {
            let mut s = s.clone();
            s["id"] = json!(format!("{id}-{i}"));
            if let Some(farm) = s["body"]["properties"]["serverFarmId"].as_str() {
                s["body"]["properties"]["serverFarmId"] = json!(format!("{farm}-{i}"));
            }
            out.push(s);
        }
    }
    cfg["seed"] = Value::Array(out);
    let path = dir.join(format!("estate-{n}.yaml"));
    std::fs::write(&path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    path
}

// ---- Azure as a person in the portal sees it ------------------------------------------------------

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The portal principal, retrying what injected faults or a restarting emulator make fail.
struct Portal {
    arm: ArmClient,
    rt: tokio::runtime::Runtime,
}

impl Portal {
    fn retry<T>(&self, what: &str, f: impl AsyncFn() -> Result<T, ArmError>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.rt.block_on(f()) {
                Ok(v) => return v,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => panic!("portal {what}: {e}"),
            }
        }
    }

    fn get(&self, id: &str, api: &str) -> Option<Value> {
        self.retry(&format!("GET {id}"), async || self.arm.get(id, api).await)
    }

    /// A write, waiting for its operation to end.
    fn write(&self, method: &str, id: &str, api: &str, body: &Value) {
        let out = self.retry(&format!("{method} {id}"), async || match method {
            "PUT" => self.arm.put(id, api, body).await,
            "PATCH" => self.arm.patch(id, api, body).await,
            _ => self.arm.delete(id, api).await,
        });
        if let WriteOutcome::Accepted(op) = out {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                match self.rt.block_on(self.arm.poll(&op)) {
                    Ok(OperationStatus::Succeeded) => break,
                    Ok(OperationStatus::Failed(e)) => panic!("portal {method} {id} failed: {e}"),
                    _ => {}
                }
                assert!(
                    Instant::now() < deadline,
                    "portal {method} {id} never ended"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

// ---- one scenario --------------------------------------------------------------------------------

/// What a scenario owns: the emulator, the operator, its endpoints, the out-of-band fields it
/// planted, and the figures it measured.
struct Scenario<'a> {
    cluster: Cluster<'a>,
    emu: Emulator,
    op: Option<Operator>,
    portal: Portal,
    ns: String,
    eps: Vec<Ep>,
    /// (resource id, api-version, JSON pointer, value) planted by the portal principal.
    oob: Vec<(String, String, String, Value)>,
    started: Instant,
    /// Non-portal requests counted by emulators that were since restarted.
    carried: u64,
    /// Faults configured and injected, by kind.
    configured: BTreeMap<&'static str, u64>,
    injected: BTreeMap<&'static str, u64>,
    _cfg_dir: tempfile::TempDir,
}

impl<'a> Scenario<'a> {
    fn new(plane: &'a ControlPlane, ns: &str, n: usize, time_scale: f64) -> Scenario<'a> {
        let cluster = Cluster(plane);
        let ns = cluster.namespace(ns);
        let cfg_dir = tempfile::tempdir().unwrap();
        let cfg = estate_config(n, cfg_dir.path());
        let emu = Emulator::start(cfg.to_str().unwrap(), time_scale);
        let portal = Portal {
            arm: emu.portal(),
            rt: rt(),
        };
        let eps: Vec<Ep> = (0..n).map(Ep).collect();
        for ep in &eps {
            cluster.tls_secret(&ns, &format!("tls-{}", ep.0), &ep.host(), emu.dir());
        }
        Scenario {
            cluster,
            emu,
            op: None,
            portal,
            ns,
            eps,
            oob: Vec::new(),
            started: Instant::now(),
            carried: 0,
            configured: BTreeMap::new(),
            injected: BTreeMap::new(),
            _cfg_dir: cfg_dir,
        }
    }

    fn start_operator(&mut self) {
        let cfg = tenancy(self.emu.dir(), &[&self.ns], None);
        self.op = Some(Operator::start(
            &self.emu,
            &cfg,
            Some(&self.cluster.0.kubeconfig_path()),
            &[],
        ));
        self.started = Instant::now();
        self.carried = 0;
        self.rt_block(self.emu.reset_stats());
    }

    fn op(&mut self) -> &mut Operator {
        self.op.as_mut().unwrap()
    }

    fn rt_block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.portal.rt.block_on(f)
    }

    fn apply_all(&self, policy: &str) {
        for ep in &self.eps {
            self.cluster
                .apply(&ep.manifest(&self.ns, policy), self.emu.dir());
        }
    }

    /// A person in the portal adds fields fhirlock has no model for (and tags) to every
    /// resource fhirlock writes; [`Scenario::check_oob`] requires them all to survive.
    fn plant_oob(&mut self, ep: Ep) {
        let i = ep.0;
        let plant = |this: &mut Self, id: String, api: &str, method: &str, body: Value| {
            this.portal.write(method, &id, api, &body);
            let mut flat = Vec::new();
            flatten("", &body, &mut flat);
            for (ptr, v) in flat {
                this.oob.push((id.clone(), api.to_owned(), ptr, v));
            }
        };
        plant(
            self,
            ep.site(),
            WEB,
            "PATCH",
            json!({"tags": {"oob-owner": format!("portal-{i}")}, "properties": {"oobSiteNote": format!("keep-{i}")}}),
        );
        plant(
            self,
            format!("{}/config/web", ep.site()),
            WEB,
            "PATCH",
            json!({"properties": {"oobConfigNote": format!("keep-{i}")}}),
        );
        plant(
            self,
            ep.cosmos(),
            COSMOS,
            "PATCH",
            json!({"tags": {"oob-owner": format!("portal-{i}")}, "properties": {"oobCosmosNote": format!("keep-{i}")}}),
        );
    }

    /// Out-of-band fields on what fhirlock created: the gateway (a tag and a property) and its
    /// subnets (a property), written as a person would, read-modify-write.
    fn plant_oob_on_created(&mut self, ep: Ep) {
        let i = ep.0;
        let gw_id = ep.gateway();
        let mut gw = self.portal.get(&gw_id, NET).expect("the gateway exists");
        gw["tags"]["oob-owner"] = json!(format!("portal-{i}"));
        gw["properties"]["oobGatewayNote"] = json!(format!("keep-{i}"));
        self.portal.write("PUT", &gw_id, NET, &gw);
        self.oob.push((
            gw_id.clone(),
            NET.into(),
            "/tags/oob-owner".into(),
            json!(format!("portal-{i}")),
        ));
        self.oob.push((
            gw_id,
            NET.into(),
            "/properties/oobGatewayNote".into(),
            json!(format!("keep-{i}")),
        ));
        for name in [ep.agw_subnet(), ep.int_subnet()] {
            let id = ep.subnet_id(&name);
            let mut sn = self.portal.get(&id, NET).expect("the subnet exists");
            sn["properties"]["oobSubnetNote"] = json!(format!("keep-{i}"));
            self.portal.write("PUT", &id, NET, &sn);
            self.oob.push((
                id,
                NET.into(),
                "/properties/oobSubnetNote".into(),
                json!(format!("keep-{i}")),
            ));
        }
    }

    /// Every out-of-band field planted on a resource that still exists is still there.
    fn check_oob(&self) {
        for (id, api, ptr, want) in &self.oob {
            let Some(now) = self.portal.get(id, api) else {
                continue;
            };
            assert_eq!(
                now.pointer(ptr),
                Some(want),
                "the out-of-band field {ptr} of {id} was lost: {now}"
            );
        }
    }

    /// No duplicate or stray resource: exactly the gateways and subnets of the live endpoints.
    fn check_no_duplicates(&self, live: &[Ep]) {
        let list = self
            .portal
            .get(
                &format!(
                    "{}/providers/Microsoft.Network/applicationGateways",
                    rg("fhir")
                ),
                NET,
            )
            .unwrap();
        let mut gws: Vec<String> = list["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect();
        gws.sort();
        let mut want: Vec<String> = live.iter().map(|e| e.gateway_name()).collect();
        want.sort();
        assert_eq!(gws, want, "gateways in resource group fhir");
        let v = self.portal.get(&vnet(), NET).unwrap();
        let mut subnets: Vec<String> = v["properties"]["subnets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        subnets.sort();
        let mut want: Vec<String> = live
            .iter()
            .flat_map(|e| [e.agw_subnet(), e.int_subnet()])
            .collect();
        want.sort();
        assert_eq!(subnets, want, "subnets in the VNet");
    }

    /// The oracle agrees: no site of a live endpoint is reachable from the internet.
    fn check_exposure(&self, live: &[Ep]) {
        let x = self.rt_block(self.emu.exposure());
        for ep in live {
            let site = &x["sites"][ep.site()];
            for part in ["main", "scm"] {
                assert_eq!(
                    site[part]["internetDirect"],
                    false,
                    "{} {part}: {}",
                    ep.site(),
                    site[part]
                );
                assert_eq!(site[part]["internetViaGateway"], false, "{}", site[part]);
            }
        }
    }

    /// Requests not made by the portal principal (the operator's, and any it made without a
    /// valid token) since the operator started.
    fn operator_requests(&self) -> u64 {
        let stats = self.rt_block(self.emu.stats());
        let now: u64 = stats["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["principal"] != PORTAL_OBJECT)
            .map(|e| e["count"].as_u64().unwrap())
            .sum();
        self.carried + now
    }

    /// The request rate so far, per minute and endpoint; asserts the bound and records the worst.
    fn check_rate(&self, what: &str) -> f64 {
        let minutes = self.started.elapsed().as_secs_f64() / 60.0;
        let n = self.operator_requests();
        let rpm = n as f64 / minutes / self.eps.len() as f64;
        eprintln!(
            "resilience: {what}: {n} operator requests in {:.1} min for {} endpoint(s) = {rpm:.0}/min per endpoint",
            minutes,
            self.eps.len()
        );
        assert!(
            rpm < MAX_PER_MINUTE_PER_ENDPOINT,
            "{what}: {rpm:.0} requests per minute per endpoint: a hot loop?"
        );
        let mut w = WORST_RPM.lock().unwrap();
        *w = w.max(rpm);
        rpm
    }

    /// Restarts the emulator (SIGKILL), carrying its counters over.
    fn restart_emulator(&mut self) {
        self.carried = self.operator_requests();
        self.emu.restart();
    }

    fn wait(&self, what: &str, timeout: Duration, mut pred: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !pred(self) {
            if Instant::now() > deadline {
                let states: Vec<String> = self
                    .eps
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.name(),
                            self.cluster
                                .get(&self.ns, &e.name())
                                .map(|o| serde_json::to_string_pretty(&o["status"]).unwrap())
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                let log = self.op.as_ref().map(|o| o.logs()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                panic!(
                    "timed out waiting for {what}\n{}\noperator log tail:\n{}",
                    states.join("\n"),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn wait_ready(&self, what: &str, timeout: Duration) {
        self.wait(what, timeout, |s| {
            s.eps.iter().all(|e| {
                s.cluster
                    .get(&s.ns, &e.name())
                    .is_some_and(|o| is_ready(&o))
            })
        });
    }

    /// Converged and sound: Ready, nothing stray, nothing lost, nothing exposed, no hot loop.
    fn check_converged(&self, what: &str) -> f64 {
        self.check_no_duplicates(&self.eps);
        self.check_oob();
        self.check_exposure(&self.eps);
        self.check_rate(what)
    }

    // ---- faults -------------------------------------------------------------------------------

    fn inject(&mut self, rules: Vec<(Kind, Value)>) {
        let mut all = Vec::new();
        for (k, r) in rules {
            *self.configured.entry(k.name()).or_default() += r["count"].as_u64().unwrap();
            all.push(r);
        }
        self.rt_block(self.emu.faults(Value::Array(all)));
    }

    /// Counts what the rules injected (configured minus left over), clears the rest, and
    /// returns how many faults this phase injected.
    fn settle_faults(&mut self) -> u64 {
        let pending = self.rt_block(self.emu.pending_faults());
        let mut left: BTreeMap<&'static str, u64> = BTreeMap::new();
        for r in pending.as_array().unwrap() {
            *left.entry(Kind::of(r).name()).or_default() += r["count"].as_u64().unwrap();
        }
        self.rt_block(self.emu.clear_faults());
        let mut phase = 0;
        for (k, n) in std::mem::take(&mut self.configured) {
            let used = n - left.get(k).copied().unwrap_or(0);
            *self.injected.entry(k).or_default() += used;
            phase += used;
        }
        phase
    }
}

/// Flattens a JSON body into (pointer, leaf value) pairs.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}/{k}"), v, out);
            }
        }
        _ => out.push((prefix.to_owned(), v.clone())),
    }
}

// ---- the fault matrix ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Throttled,
    Internal,
    Unavailable,
    Dropped,
    FailedOperation,
    Conflict409,
    Precondition412,
    ExpiredToken,
}

const KINDS: [Kind; 8] = [
    Kind::Throttled,
    Kind::Internal,
    Kind::Unavailable,
    Kind::Dropped,
    Kind::FailedOperation,
    Kind::Conflict409,
    Kind::Precondition412,
    Kind::ExpiredToken,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Throttled => "429",
            Kind::Internal => "500",
            Kind::Unavailable => "503",
            Kind::Dropped => "dropped-connection",
            Kind::FailedOperation => "failed-operation",
            Kind::Conflict409 => "409",
            Kind::Precondition412 => "412",
            Kind::ExpiredToken => "expired-token",
        }
    }

    fn of(rule: &Value) -> Kind {
        if rule["dropConnection"] == true {
            return Kind::Dropped;
        }
        if !rule["failLro"].is_null() {
            return Kind::FailedOperation;
        }
        match rule["status"].as_u64() {
            Some(429) => Kind::Throttled,
            Some(500) => Kind::Internal,
            Some(503) => Kind::Unavailable,
            Some(409) => Kind::Conflict409,
            Some(412) => Kind::Precondition412,
            Some(401) => Kind::ExpiredToken,
            _ => panic!("unknown rule {rule}"),
        }
    }

    /// The rule for this kind on `(method, path)`. A failed operation needs a write that starts
    /// one, so it takes the phase's long-running write instead.
    fn rule(self, method: &str, path: &str, lro: (&str, &str), count: u64) -> Value {
        let base = |m: &str, p: &str| json!({"method": m, "path": p, "count": count});
        let mut r = base(method, path);
        match self {
            Kind::Throttled => {
                r["status"] = json!(429);
                r["retryAfter"] = json!(1);
            }
            Kind::Internal => r["status"] = json!(500),
            Kind::Unavailable => {
                r["status"] = json!(503);
                r["retryAfter"] = json!(1);
            }
            Kind::Dropped => r["dropConnection"] = json!(true),
            Kind::FailedOperation => {
                r = base(lro.0, lro.1);
                r["failLro"] = json!("InternalServerError");
            }
            Kind::Conflict409 => r["status"] = json!(409),
            Kind::Precondition412 => r["status"] = json!(412),
            Kind::ExpiredToken => r["status"] = json!(401),
        }
        r
    }
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Create,
    Drift,
    Update,
    Delete,
}

impl Phase {
    /// Where the operator's requests go in this phase (method, path glob), and the
    /// long-running write a failed operation is injected into.
    fn targets(self, ep: Ep) -> (Vec<(&'static str, String)>, (&'static str, String)) {
        let polls = ("GET", "*/operations*".to_owned());
        let gw = format!("*/applicationGateways/{}", ep.gateway_name());
        let agw = format!("*/subnets/{}", ep.agw_subnet());
        let int = format!("*/subnets/{}", ep.int_subnet());
        let site = format!("*/sites/fhir-server-{}", ep.0);
        let cfg = format!("{site}/config/web");
        let cosmos = format!("*/databaseAccounts/fhir-cosmos-{}", ep.0);
        match self {
            Phase::Create => (
                vec![
                    ("PUT", agw.clone()),
                    ("*", gw.clone()),
                    ("PATCH", cfg),
                    ("*", cosmos),
                    ("PATCH", site),
                    ("GET", "*/virtualNetworks/hscn-vnet".into()),
                    polls,
                    ("PUT", int),
                ],
                ("PUT", gw),
            ),
            Phase::Drift => (
                vec![
                    ("PATCH", cfg.clone()),
                    ("PATCH", cosmos.clone()),
                    ("PUT", agw.clone()),
                    ("GET", cfg),
                    polls,
                    ("GET", "*/virtualNetworks/hscn-vnet".into()),
                    ("GET", cosmos),
                    ("GET", agw.clone()),
                ],
                ("PUT", agw),
            ),
            Phase::Update => (
                vec![
                    ("PUT", gw.clone()),
                    ("GET", gw.clone()),
                    polls,
                    ("GET", "*/virtualNetworks/hscn-vnet".into()),
                ],
                ("PUT", gw),
            ),
            Phase::Delete => (
                vec![
                    ("DELETE", gw.clone()),
                    ("DELETE", agw),
                    ("DELETE", int),
                    ("*", format!("{site}/networkConfig/virtualNetwork")),
                    ("PATCH", cfg),
                    ("PATCH", cosmos),
                    polls,
                    ("GET", gw.clone()),
                ],
                ("DELETE", gw),
            ),
        }
    }

    /// Quick: every kind once per phase, each on a different target. Soak: `only` on every target.
    fn rules(self, ep: Ep, only: Option<Kind>, count: u64) -> Vec<(Kind, Value)> {
        let (targets, lro) = self.targets(ep);
        let lro = (lro.0, lro.1.as_str());
        match only {
            None => KINDS
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let (m, p) = &targets[(i + self as usize) % targets.len()];
                    (*k, k.rule(m, p, lro, count))
                })
                .collect(),
            Some(k) => {
                let mut v: Vec<(Kind, Value)> = targets
                    .iter()
                    .map(|(m, p)| (k, k.rule(m, p, lro, count)))
                    .collect();
                if k == Kind::FailedOperation {
                    v.truncate(1);
                }
                v
            }
        }
    }
}

/// One lifecycle (create, drift, update, delete) with faults injected in every phase.
fn lifecycle<'a>(
    plane: &'a ControlPlane,
    trial: &str,
    n: usize,
    only: Option<Kind>,
) -> Scenario<'a> {
    // Twice in soak: a second 401 or dropped GET defeats the client's one immediate re-send, so
    // the reconcile itself fails (and backs off: 120 s for an auth failure while deleting).
    let count = if soak() { 2 } else { 1 };
    let mut s = Scenario::new(plane, &format!("res-faults-{trial}"), n, 0.01);
    let eps = s.eps.clone();
    for ep in &eps {
        s.plant_oob(*ep);
    }
    s.start_operator();
    // Soak piles up to 16 faults per endpoint and phase; consecutive transient failures back an
    // endpoint off exponentially (up to 300 s), so its waits allow for a full backoff.
    let budget = Duration::from_secs(if soak() { 720 } else { 150 });

    // Create.
    for ep in &eps {
        s.inject(Phase::Create.rules(*ep, only, count));
    }
    s.apply_all("Delete");
    s.wait_ready("Ready through the create faults", budget);
    let injected = s.settle_faults();
    assert!(injected > 0, "no fault was injected while creating");
    for ep in &eps {
        s.plant_oob_on_created(*ep);
    }
    s.wait_ready("Ready after the out-of-band writes", budget);
    s.check_converged(&format!("{trial} create"));

    // Drift: a person reopens back doors; the corrections meet faults.
    for ep in &eps {
        let id = ep.subnet_id(&ep.agw_subnet());
        let mut sn = s.portal.get(&id, NET).unwrap();
        sn["properties"]["serviceEndpoints"] = json!([]);
        s.portal.write("PUT", &id, NET, &sn);
        s.portal.write(
            "PATCH",
            &ep.cosmos(),
            COSMOS,
            &json!({"properties": {"ipRules": [{"ipAddressOrRange": "203.0.113.7"}]}}),
        );
        s.portal.write(
            "PATCH",
            &format!("{}/config/web", ep.site()),
            WEB,
            &json!({"properties": {"ipSecurityRestrictionsDefaultAction": "Allow"}}),
        );
        s.inject(Phase::Drift.rules(*ep, only, count));
    }
    s.wait("the drift corrected", budget, |s| {
        eps.iter().all(|ep| {
            let cfg = s
                .portal
                .get(&format!("{}/config/web", ep.site()), WEB)
                .unwrap();
            let cosmos = s.portal.get(&ep.cosmos(), COSMOS).unwrap();
            let sn = s.portal.get(&ep.subnet_id(&ep.agw_subnet()), NET).unwrap();
            cfg["properties"]["ipSecurityRestrictionsDefaultAction"] == "Deny"
                && cosmos["properties"]["ipRules"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
                && sn["properties"]["serviceEndpoints"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|x| x["service"] == "Microsoft.Web"))
        })
    });
    s.wait_ready("Ready after the drift", budget);
    s.settle_faults();
    s.check_converged(&format!("{trial} drift"));

    // Update: a spec change that rewrites each gateway.
    for ep in &eps {
        s.inject(Phase::Update.rules(*ep, only, count));
    }
    for ep in &eps {
        let mut m = ep.manifest(&s.ns, "Delete");
        m["spec"]["gateway"]["sku"]["maxCapacity"] = json!(4);
        m["spec"]["gateway"]["probePath"] = json!("/health");
        s.cluster.apply(&m, s.emu.dir());
    }
    s.wait("the gateways updated", budget, |s| {
        eps.iter().all(|ep| {
            let gw = s.portal.get(&ep.gateway(), NET).unwrap();
            gw["properties"]["autoscaleConfiguration"]["maxCapacity"] == 4
                && gw["properties"]["provisioningState"] == "Succeeded"
        })
    });
    s.wait_ready("Ready after the update", budget);
    let injected = s.settle_faults();
    assert!(injected > 0, "no fault was injected while updating");
    s.check_converged(&format!("{trial} update"));

    // Delete (deletionPolicy Delete): fhirlock removes what it created, and only that.
    for ep in &eps {
        s.inject(Phase::Delete.rules(*ep, only, count));
    }
    for ep in &eps {
        s.cluster
            .ok(&["delete", "sfe", &ep.name(), "-n", &s.ns, "--wait=false"]);
    }
    s.wait("the endpoints deleted", budget, |s| {
        eps.iter().all(|ep| s.cluster.gone(&s.ns, &ep.name()))
    });
    let injected = s.settle_faults();
    assert!(injected > 0, "no fault was injected while deleting");
    s.check_no_duplicates(&[]);
    s.check_oob();
    for ep in &eps {
        let site = s.portal.get(&ep.site(), WEB).expect("the site stays");
        assert!(site["properties"]["virtualNetworkSubnetId"].is_null());
        let cfg = s
            .portal
            .get(&format!("{}/config/web", ep.site()), WEB)
            .unwrap();
        assert_eq!(
            cfg["properties"]["ipSecurityRestrictionsDefaultAction"], "Deny",
            "deleting reopened the site"
        );
    }
    s.check_rate(&format!("{trial} delete"));
    s
}

#[test]
fn the_fault_matrix_across_the_lifecycle_ends_converged_without_duplicates_or_lost_fields() {
    let _s = serial();
    let plane = fhirlock_tests::plane();
    let trials: Vec<(String, usize, Option<Kind>)> = if soak() {
        let mut v = vec![("mixed".to_owned(), 2, None)];
        v.extend(KINDS.iter().map(|k| (k.name().to_owned(), 1, Some(*k))));
        v
    } else {
        vec![("mixed".to_owned(), 1, None)]
    };
    let mut total: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (name, n, only) in &trials {
        let s = lifecycle(plane, name, *n, *only);
        for (k, v) in &s.injected {
            *total.entry(k).or_default() += v;
        }
        if let Some(k) = only {
            assert!(
                s.injected.get(k.name()).copied().unwrap_or(0) > 0,
                "trial {name}: no {} fault was injected",
                k.name()
            );
        }
    }
    for k in KINDS {
        assert!(
            total.get(k.name()).copied().unwrap_or(0) > 0,
            "no {} fault was injected: {total:?}",
            k.name()
        );
    }
    eprintln!(
        "resilience: fault matrix: {} trial(s) x 4 phases; faults injected {total:?} (total {}); worst {:.0} requests/min per endpoint",
        trials.len(),
        total.values().sum::<u64>(),
        *WORST_RPM.lock().unwrap()
    );
}

// ---- SIGKILLs --------------------------------------------------------------------------------------

#[test]
fn twenty_random_sigkills_during_convergence_of_several_endpoints() {
    let _s = serial();
    let plane = fhirlock_tests::plane();
    let (trials, n, kills) = if soak() { (3, 4, 20) } else { (1, 3, 20) };
    let mut rng = Rng::new("sigkills");
    let mut during = 0;
    for t in 0..trials {
        // Slow operations (a gateway takes 15 s), so the kills land while work is in flight.
        let mut s = Scenario::new(plane, &format!("res-kill-{t}"), n, 0.05);
        for ep in s.eps.clone() {
            s.plant_oob(ep);
        }
        s.start_operator();
        s.apply_all("Retain");
        for _ in 0..kills {
            std::thread::sleep(rng.millis(500, 2500));
            let converged = s.eps.iter().all(|e| {
                s.cluster
                    .get(&s.ns, &e.name())
                    .is_some_and(|o| is_ready(&o))
            });
            if !converged {
                during += 1;
            }
            s.op().restart();
        }
        s.wait_ready("Ready after the SIGKILLs", Duration::from_secs(240));
        s.check_converged(&format!("sigkill trial {t}"));
        // And it stays converged: nothing is written once Ready.
        let writes_before = s.rt_block(s.emu.operator_requests()).1;
        std::thread::sleep(Duration::from_secs(8));
        assert_eq!(
            s.rt_block(s.emu.operator_requests()).1,
            writes_before,
            "the operator kept writing after converging"
        );
        // Retain: the objects go, Azure stays; no endpoint is left for later tests' operators.
        s.cluster
            .ok(&["delete", "sfe", "--all", "-n", &s.ns, "--timeout=60s"]);
        s.check_no_duplicates(&s.eps);
    }
    assert!(during > 0, "no kill landed during convergence");
    eprintln!(
        "resilience: sigkills: {trials} trial(s) x {kills} SIGKILLs ({during} during convergence) over {n} endpoints; worst {:.0} requests/min per endpoint",
        *WORST_RPM.lock().unwrap()
    );
}

// ---- restarts of the control plane and the emulator -----------------------------------------------

fn wait_pending_gateway(s: &Scenario<'_>, ep: Ep) {
    s.wait(
        "a gateway operation in flight",
        Duration::from_secs(120),
        |s| {
            s.cluster.get(&s.ns, &ep.name()).is_some_and(|o| {
                o["status"]["pendingOperations"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|x| x["step"] == "Gateway"))
            })
        },
    );
}

#[test]
fn apiserver_etcd_and_emulator_restarts_mid_operation_end_converged() {
    let _s = serial();
    // Its own control plane: restarting it disturbs no other test.
    let plane = ControlPlane::start().unwrap_or_else(|e| panic!("control plane: {e:#}"));
    Cluster(&plane).install_crds();
    let order: Vec<Vec<&str>> = if soak() {
        vec![
            vec!["emulator"],
            vec!["apiserver"],
            vec!["etcd"],
            vec!["emulator", "apiserver", "etcd"],
            vec!["etcd", "emulator", "apiserver"],
        ]
    } else {
        vec![vec!["emulator", "apiserver", "etcd"]]
    };
    let mut restarts: BTreeMap<&str, u64> = BTreeMap::new();
    for (t, order) in order.iter().enumerate() {
        let (n, scale) = if soak() { (2, 0.05) } else { (1, 0.03) };
        let mut s = Scenario::new(&plane, &format!("res-restart-{t}"), n, scale);
        let t0 = Instant::now();
        for ep in s.eps.clone() {
            s.plant_oob(ep);
        }
        s.start_operator();
        s.apply_all("Delete");
        let first = s.eps[0];
        // Mid-operation: the first gateway's creation is running.
        wait_pending_gateway(&s, first);
        for what in order {
            match *what {
                "emulator" => s.restart_emulator(),
                "apiserver" => {
                    plane.restart_apiserver().unwrap();
                }
                "etcd" => {
                    plane.restart_etcd().unwrap();
                }
                _ => unreachable!(),
            }
            *restarts.entry(what).or_default() += 1;
            std::thread::sleep(Duration::from_secs(2));
        }
        eprintln!(
            "resilience: restart trial {t}: {order:?} done {:.0} s after the apply",
            t0.elapsed().as_secs_f64()
        );
        s.wait_ready("Ready after the restarts", Duration::from_secs(240));
        eprintln!(
            "resilience: restart trial {t}: Ready {:.0} s after the apply",
            t0.elapsed().as_secs_f64()
        );
        s.check_converged(&format!("restart trial {t} create"));
        if soak() {
            // And while deleting: the same restarts during the gateways' deletion.
            for ep in s.eps.clone() {
                s.cluster
                    .ok(&["delete", "sfe", &ep.name(), "-n", &s.ns, "--wait=false"]);
            }
            std::thread::sleep(Duration::from_secs(1));
            for what in order {
                match *what {
                    "emulator" => s.restart_emulator(),
                    "apiserver" => {
                        plane.restart_apiserver().unwrap();
                    }
                    _ => {
                        plane.restart_etcd().unwrap();
                    }
                }
                *restarts.entry(what).or_default() += 1;
                std::thread::sleep(Duration::from_secs(2));
            }
            s.wait("the endpoints deleted", Duration::from_secs(240), |s| {
                s.eps.iter().all(|e| s.cluster.gone(&s.ns, &e.name()))
            });
            s.check_no_duplicates(&[]);
            s.check_oob();
            s.check_rate(&format!("restart trial {t} delete"));
        }
    }
    eprintln!(
        "resilience: restarts: {restarts:?}; worst {:.0} requests/min per endpoint",
        *WORST_RPM.lock().unwrap()
    );
}
