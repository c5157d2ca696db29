//! One scenario: its emulator, operator and endpoints, the out-of-band fields it planted, the
//! faults it injected, and the checks that it ended converged and sound.

use super::*;

/// What a scenario owns: the emulator, the operator, its endpoints, the out-of-band fields it
/// planted, and the figures it measured.
pub struct Scenario<'a> {
    pub cluster: Cluster<'a>,
    pub emu: Emulator,
    pub op: Option<Operator>,
    pub portal: Portal,
    pub ns: String,
    pub eps: Vec<Ep>,
    /// (resource id, api-version, JSON pointer, value) planted by the portal principal.
    pub oob: Vec<(String, String, String, Value)>,
    pub started: Instant,
    /// Non-portal requests counted by emulators that were since restarted.
    pub carried: u64,
    /// Faults configured and injected, by kind.
    pub configured: BTreeMap<&'static str, u64>,
    pub injected: BTreeMap<&'static str, u64>,
    _cfg_dir: tempfile::TempDir,
}

impl<'a> Scenario<'a> {
    pub fn new(plane: &'a ControlPlane, ns: &str, n: usize, time_scale: f64) -> Scenario<'a> {
        let cluster = Cluster::new(plane).retrying(Duration::from_secs(60));
        let ns = cluster.namespace(ns).unwrap();
        let cfg_dir = tempfile::tempdir().unwrap();
        let cfg = estate_config(n, cfg_dir.path());
        let emu = emulator(cfg.to_str().unwrap(), time_scale);
        let portal = Portal {
            arm: emu.portal().unwrap(),
            rt: rt(),
        };
        let eps: Vec<Ep> = (0..n).map(Ep).collect();
        for ep in &eps {
            cluster
                .tls_secret(&ns, &format!("tls-{}", ep.0), &ep.host(), emu.dir())
                .unwrap();
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

    pub fn start_operator(&mut self) {
        let cfg = tenancy(self.emu.dir(), &[&self.ns], None);
        let kubeconfig = self.cluster.plane.kubeconfig_path();
        self.op = Some(operator(&self.emu, &cfg, Some(&kubeconfig), &[]));
        self.started = Instant::now();
        self.carried = 0;
        self.rt_block(self.emu.control.reset_stats()).unwrap();
    }

    pub fn op(&mut self) -> &mut Operator {
        self.op.as_mut().unwrap()
    }

    pub fn rt_block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.portal.rt.block_on(f)
    }

    pub fn apply_all(&self, policy: &str) {
        for ep in &self.eps {
            self.cluster
                .apply_ok(&ep.manifest(&self.ns, policy), self.emu.dir())
                .unwrap();
        }
    }

    /// A person in the portal adds fields fhirlock has no model for (and tags) to every
    /// resource fhirlock writes; [`Scenario::check_oob`] requires them all to survive.
    pub fn plant_oob(&mut self, ep: Ep) {
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
    /// subnets (a property), written as a person would, read-modify-write. The properties are
    /// real ones of Microsoft's models that fhirlock does not manage: it PUTs these resources
    /// whole, and every body it sends is checked against the models.
    pub fn plant_oob_on_created(&mut self, ep: Ep) {
        let i = ep.0;
        let gw_id = ep.gateway();
        let mut gw = self.portal.get(&gw_id, NET).expect("the gateway exists");
        gw["tags"]["oob-owner"] = json!(format!("portal-{i}"));
        gw["properties"]["enableHttp2"] = json!(true);
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
            "/properties/enableHttp2".into(),
            json!(true),
        ));
        for name in [ep.agw_subnet(), ep.int_subnet()] {
            let id = ep.subnet_id(&name);
            let mut sn = self.portal.get(&id, NET).expect("the subnet exists");
            sn["properties"]["defaultOutboundAccess"] = json!(false);
            self.portal.write("PUT", &id, NET, &sn);
            self.oob.push((
                id,
                NET.into(),
                "/properties/defaultOutboundAccess".into(),
                json!(false),
            ));
        }
    }

    /// Every out-of-band field planted on a resource that still exists is still there.
    pub fn check_oob(&self) {
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
    pub fn check_no_duplicates(&self, live: &[Ep]) {
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
    pub fn check_exposure(&self, live: &[Ep]) {
        let x = self.rt_block(self.emu.control.exposure()).unwrap();
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
    pub fn operator_requests(&self) -> u64 {
        let stats = self.rt_block(self.emu.control.stats()).unwrap();
        self.carried + requests(&stats, |e| e["principal"] != PORTAL_OBJECT)
    }

    /// The request rate so far, per minute and endpoint; asserts the bound and records the worst.
    pub fn check_rate(&self, what: &str) -> f64 {
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
    pub fn restart_emulator(&mut self) {
        self.carried = self.operator_requests();
        self.emu.restart().unwrap();
    }

    pub fn wait(&self, what: &str, timeout: Duration, mut pred: impl FnMut(&Self) -> bool) {
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
                                .endpoint(&self.ns, &e.name())
                                .map(|o| serde_json::to_string_pretty(&o["status"]).unwrap())
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                let log = self.op.as_ref().map(|o| o.logs()).unwrap_or_default();
                panic!(
                    "timed out waiting for {what}\n{}\noperator log tail:\n{}",
                    states.join("\n"),
                    tail(&log, 60)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn wait_ready(&self, what: &str, timeout: Duration) {
        self.wait(what, timeout, |s| {
            s.eps.iter().all(|e| {
                s.cluster
                    .endpoint(&s.ns, &e.name())
                    .is_some_and(|o| is_ready(&o))
            })
        });
    }

    /// Converged and sound: Ready, nothing stray, nothing lost, nothing exposed, no hot loop.
    pub fn check_converged(&self, what: &str) -> f64 {
        self.check_no_duplicates(&self.eps);
        self.check_oob();
        self.check_exposure(&self.eps);
        self.check_rate(what)
    }

    // ---- faults -------------------------------------------------------------------------------

    pub fn inject(&mut self, rules: Vec<(Kind, Value)>) {
        let mut all = Vec::new();
        for (k, r) in rules {
            *self.configured.entry(k.name()).or_default() += r["count"].as_u64().unwrap();
            all.push(r);
        }
        self.rt_block(self.emu.control.faults(Value::Array(all)))
            .unwrap();
    }

    /// Counts what the rules injected (configured minus left over), clears the rest, and
    /// returns how many faults this phase injected.
    pub fn settle_faults(&mut self) -> u64 {
        let pending = self.rt_block(self.emu.control.pending_faults()).unwrap();
        let mut left: BTreeMap<&'static str, u64> = BTreeMap::new();
        for r in pending.as_array().unwrap() {
            *left.entry(Kind::of(r).name()).or_default() += r["count"].as_u64().unwrap();
        }
        self.rt_block(self.emu.control.clear_faults()).unwrap();
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
pub fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}/{k}"), v, out);
            }
        }
        _ => out.push((prefix.to_owned(), v.clone())),
    }
}
