//! Where the live scenario runs: the emulator (`make test`), or a real subscription (`make
//! live-test` with the `AZURE_*` variables). Everything else is the same code: the ARM client,
//! the bodies, the control plane and the operator binary.

use super::*;

/// Microsoft.Resources `resources/stable/2021-04-01/resources.json`: ResourceGroups_* and
/// Resources_ListByResourceGroup.
pub const RESOURCES_API: &str = "2021-04-01";
/// The tag that marks a live run's resource group, for the sweeper; its value is when the run
/// started, in Unix seconds. ARM tag names may not contain `/` (docs/azure-fidelity.md B1).
pub const LIVE_TAG: &str = "fhirlock-live-created";

/// A billable run is meant: `make live-test` and `make live-sweep` set `FHIRLOCK_LIVE_AZURE=1`,
/// so `AZURE_*` variables left in a shell never start one from `make test`.
pub fn azure_wanted() -> bool {
    std::env::var("FHIRLOCK_LIVE_AZURE").as_deref() == Ok("1")
}

/// How long each wait may take on a target.
pub struct Timeouts {
    pub ready: Duration,
    pub closed: Duration,
    pub deleted: Duration,
    pub group_gone: Duration,
    /// One portal or estate write, its operation included.
    pub write: Duration,
}

pub struct Target {
    pub name: &'static str,
    pub subscription: String,
    pub location: String,
    /// The estate's owner: creates the resource group and the wide-open estate.
    pub owner: ArmClient,
    /// The owner's configuration, for a client of the guard's own (a client's pooled
    /// connections belong to the runtime that opened them).
    pub owner_config: ArmConfig,
    /// A person in the portal, planting back doors (another principal where the target has one).
    pub portal: ArmClient,
    /// What `fhirlock run` needs to reach this ARM as its own principal.
    pub operator_env: Vec<(String, String)>,
    /// `--resync-seconds`: how soon a back door is looked at again.
    pub resync_seconds: u64,
    /// App Service plan SKU name (`B1`, the cheapest with regional VNet integration).
    pub plan_sku: String,
    pub timeouts: Timeouts,
    /// Started by [`Target::emulator`]; dropped (killed, its bodies checked) before the
    /// directory that holds its CA and state.
    pub emulator: Option<Emulator>,
    /// Logs of the operator and kubectl files.
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Target {
    /// `arm-emulator` with the estate's principals and feature registration, and no resources:
    /// the scenario creates them, as it does in Azure. A small time scale keeps it short.
    pub fn emulator() -> Target {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = must(fhirlock_testkit::example("arm-emulator-estate.yaml"));
        cfg.as_object_mut().unwrap().remove("seed");
        let config = dir.path().join("live-emulator.yaml");
        std::fs::write(&config, serde_yaml::to_string(&cfg).unwrap()).unwrap();
        let emu = must(Emulator::start(EmulatorOptions {
            program: bin("arm-emulator"),
            config,
            time_scale: 0.01,
            dir: Some(dir.path().to_owned()),
            data_on_tmpfs: false,
            check_bodies_on_drop: true,
        }));
        let owner_config = must(emu.ready.arm_config(
            emu.ready.secret_credential(PORTAL_CLIENT, PORTAL_SECRET),
            "live-owner",
        ));
        let owner = must(ArmClient::new(owner_config.clone()));
        let portal = must(emu.portal());
        let operator_env = emu
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let secs = Duration::from_secs;
        Target {
            name: "emulator",
            subscription: SUBSCRIPTION.into(),
            location: "uksouth".into(),
            owner,
            owner_config,
            portal,
            operator_env,
            resync_seconds: 3,
            plan_sku: "B1".into(),
            timeouts: Timeouts {
                ready: secs(120),
                closed: secs(60),
                deleted: secs(60),
                group_gone: secs(60),
                write: secs(60),
            },
            dir: dir.path().to_owned(),
            _temp: Some(dir),
            emulator: Some(emu),
        }
    }

    /// The public cloud, from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
    /// `AZURE_SUBSCRIPTION_ID` (and `AZURE_LOCATION`, default `uksouth`). `Err` says what is
    /// missing.
    pub fn azure_from_env() -> Result<Target, String> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let need = [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_SUBSCRIPTION_ID",
        ];
        let missing: Vec<&str> = need.iter().copied().filter(|k| get(k).is_none()).collect();
        if !missing.is_empty() {
            return Err(format!("{} not set", missing.join(", ")));
        }
        let (tenant, client, secret) = (
            get("AZURE_TENANT_ID").unwrap(),
            get("AZURE_CLIENT_ID").unwrap(),
            get("AZURE_CLIENT_SECRET").unwrap(),
        );
        let config_for = |id: &str, secret: &str, agent: &str| ArmConfig {
            cloud: Cloud::azure_public(),
            credential: CredentialConfig::ClientSecret {
                tenant_id: tenant.clone(),
                client_id: id.into(),
                secret: secret.into(),
            },
            extra_ca_pem: None,
            user_agent: Some(agent.into()),
        };
        let client_for = |id: &str, secret: &str, agent: &str| {
            must(ArmClient::new(config_for(id, secret, agent)))
        };
        let owner_config = config_for(&client, &secret, "fhirlock-live-owner");
        let owner = must(ArmClient::new(owner_config.clone()));
        // A second principal for the back doors when one is given; else the same one.
        let portal = match (
            get("FHIRLOCK_LIVE_PORTAL_CLIENT_ID"),
            get("FHIRLOCK_LIVE_PORTAL_CLIENT_SECRET"),
        ) {
            (Some(id), Some(s)) => client_for(&id, &s, "fhirlock-live-portal"),
            _ => client_for(&client, &secret, "fhirlock-live-portal"),
        };
        let operator_env = vec![
            ("AZURE_TENANT_ID".into(), tenant.clone()),
            ("AZURE_CLIENT_ID".into(), client.clone()),
            ("AZURE_CLIENT_SECRET".into(), secret.clone()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mins = |m: u64| Duration::from_secs(60 * m);
        Ok(Target {
            name: "azure",
            subscription: get("AZURE_SUBSCRIPTION_ID").unwrap(),
            location: get("AZURE_LOCATION").unwrap_or_else(|| "uksouth".into()),
            owner,
            owner_config,
            portal,
            operator_env,
            resync_seconds: 60,
            plan_sku: get("FHIRLOCK_LIVE_PLAN_SKU").unwrap_or_else(|| "B1".into()),
            timeouts: Timeouts {
                ready: mins(45),
                closed: mins(15),
                deleted: mins(45),
                group_gone: mins(30),
                write: mins(20),
            },
            dir: dir.path().to_owned(),
            _temp: Some(dir),
            emulator: None,
        })
    }

    pub fn group_id(&self, name: &str) -> String {
        format!("/subscriptions/{}/resourceGroups/{name}", self.subscription)
    }

    /// Keeps the logs of a failed run (a temporary directory would take them along).
    pub fn keep_logs(&mut self) {
        if let Some(t) = self._temp.take() {
            eprintln!("live: logs kept in {}", t.keep().display());
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.keep_logs();
        }
    }
}

/// A write waited for: retried while ARM says it is retryable, its operation polled to the end.
pub fn write(
    rt: &Runtime,
    arm: &ArmClient,
    method: &str,
    id: &str,
    api: &str,
    body: &Value,
    timeout: Duration,
) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    let mut said = None;
    let outcome = loop {
        let r = rt.block_on(async {
            match method {
                "PUT" => arm.put(id, api, body).await,
                "PATCH" => arm.patch(id, api, body).await,
                _ => arm.delete(id, api).await,
            }
        });
        match r {
            Ok(o) => break o,
            Err(e) if e.class.is_retryable() && Instant::now() < deadline => {
                backoff(&format!("{method} {id}"), &e, &mut said);
            }
            Err(e) => panic!("{method} {id}: {e}"),
        }
    };
    let op = match outcome {
        WriteOutcome::Done { body, .. } => return body,
        WriteOutcome::Accepted(op) => op,
    };
    loop {
        let wait = match rt.block_on(arm.poll(&op)) {
            Ok(OperationStatus::Succeeded) => return None,
            Ok(OperationStatus::Failed(e)) => panic!("{method} {id} failed: {e}"),
            Ok(OperationStatus::InProgress { retry_after }) => retry_after,
            Err(e) if e.class.is_retryable() => e.retry_after,
            Err(e) => panic!("polling {method} {id}: {e}"),
        };
        assert!(Instant::now() < deadline, "{method} {id} never ended");
        std::thread::sleep(op.next_poll_in(wait).min(Duration::from_secs(15)));
    }
}

/// Waits as ARM asked (or a second), saying so at most every 30 s: a retryable error that never
/// ends (no route to Azure) should not look like a hang.
fn backoff(what: &str, e: &fhirlock_arm::ArmError, said: &mut Option<Instant>) {
    if said.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
        eprintln!("live: {what}: {e}; retrying");
        *said = Some(Instant::now());
    }
    std::thread::sleep(e.retry_after.unwrap_or(Duration::from_secs(1)));
}

/// GET, retried while ARM says it is retryable; `None` when the resource does not exist.
pub fn read(rt: &Runtime, arm: &ArmClient, id: &str, api: &str) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut said = None;
    loop {
        match rt.block_on(arm.get(id, api)) {
            Ok(v) => return v,
            Err(e) if e.class.is_retryable() && Instant::now() < deadline => {
                backoff(&format!("GET {id}"), &e, &mut said);
            }
            Err(e) => panic!("GET {id}: {e}"),
        }
    }
}

/// The run's resource group: deleted when dropped unless [`GroupGuard::disarm`] was called
/// after the scenario deleted it itself, so a failed or panicking run leaves nothing billable
/// behind. The DELETE is sent synchronously; ARM finishes it even if this process ends.
pub struct GroupGuard {
    pub id: String,
    config: ArmConfig,
    armed: bool,
}

impl GroupGuard {
    /// Creates the group, tagged for the sweeper with the time the run started.
    pub fn create(t: &Target, rt: &Runtime, name: &str) -> GroupGuard {
        let id = t.group_id(name);
        let guard = GroupGuard {
            id: id.clone(),
            config: t.owner_config.clone(),
            armed: true,
        };
        let body = json!({"location": t.location, "tags": {LIVE_TAG: unix_now().to_string()}});
        write(
            rt,
            &t.owner,
            "PUT",
            &id,
            RESOURCES_API,
            &body,
            t.timeouts.write,
        );
        guard
    }

    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        eprintln!("live: deleting {} (the run did not finish)", self.id);
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            eprintln!("live: no runtime to delete {}: `make live-sweep`", self.id);
            return;
        };
        let deleted = rt.block_on(async {
            ArmClient::new(self.config.clone())
                .map_err(|e| e.to_string())?
                .delete(&self.id, RESOURCES_API)
                .await
                .map_err(|e| e.to_string())
        });
        match deleted {
            Ok(_) => eprintln!("live: {} is being deleted", self.id),
            Err(e) => eprintln!(
                "live: deleting {} failed ({e}); `make live-sweep` removes it later",
                self.id
            ),
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A name no earlier run used: `fhirlock-live-<8 hex digits>`.
pub fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mixed = (nanos ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("fhirlock-live-{:08x}", mixed >> 32)
}

/// Deletes every resource group tagged [`LIVE_TAG`] with a start time more than `older_than`
/// ago (a run that died before its guard could act); returns their names. Groups without the
/// tag, or younger, are left alone: another run may be using them.
pub fn sweep(
    rt: &Runtime,
    arm: &ArmClient,
    subscription: &str,
    older_than: Duration,
) -> Vec<String> {
    let list = read(
        rt,
        arm,
        &format!("/subscriptions/{subscription}/resourcegroups"),
        RESOURCES_API,
    )
    .unwrap_or_default();
    assert!(
        list.get("nextLink").is_none_or(Value::is_null),
        "more resource groups than one page: {list}"
    );
    let cutoff = unix_now().saturating_sub(older_than.as_secs());
    let mut swept = Vec::new();
    for g in list["value"].as_array().into_iter().flatten() {
        let started = g["tags"][LIVE_TAG]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok());
        if started.is_some_and(|s| s < cutoff) {
            let id = g["id"].as_str().unwrap_or_default();
            match rt.block_on(arm.delete(id, RESOURCES_API)) {
                Ok(_) => swept.push(g["name"].as_str().unwrap_or(id).to_owned()),
                Err(e) => eprintln!("live-sweep: deleting {id}: {e}"),
            }
        }
    }
    swept
}
