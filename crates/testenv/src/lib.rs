//! A real Kubernetes control plane for tests and the demo, without Docker: etcd and kube-apiserver
//! (built from their official Go modules by `hack/k8s-bins`) on free loopback ports, with
//! certificates made here, RBAC authorization, service-account signing keys (so the TokenRequest
//! API works) and an admin kubeconfig on disk for `kubectl`.
//!
//! Processes never outlive their owner: they are spawned with `PR_SET_PDEATHSIG` from a guardian
//! thread that lives as long as the process ([`process`]), so even a test binary that panics or
//! is killed takes them down; an orderly stop (drop, or process exit for [`shared`]) also removes
//! the temporary directory. Other harnesses spawn their children through [`process`] too.

mod certs;
pub mod process;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub use certs::{Pki, self_signed, self_signed_until};
use process::{Process, Spec};

/// Where the pinned Kubernetes binaries are: `FHIRLOCK_K8S_BINS`, else `KUBEBUILDER_ASSETS`,
/// else whatever `hack/k8s-bins/build.sh` prints (it builds once, then answers from its cache).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    for var in ["FHIRLOCK_K8S_BINS", "KUBEBUILDER_ASSETS"] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
    }
    let script = workspace_root().join("hack/k8s-bins/build.sh");
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed; run `make k8s-bins` to see why",
            script.display()
        );
    }
    let dir = String::from_utf8(out.stdout)?
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok(PathBuf::from(dir))
}

/// The repository root (this crate lives in `crates/testenv`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// The pinned `kubectl`, built from the same release as the apiserver.
pub fn kubectl() -> anyhow::Result<PathBuf> {
    Ok(bin_dir()?.join("kubectl"))
}

/// A running etcd + kube-apiserver pair.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:<port>` of the apiserver.
    pub server: String,
    /// The certificates and keys this control plane trusts and signs with.
    pub pki: Pki,
    etcd_url: String,
    /// etcd, then kube-apiserver; `None` once stopped.
    processes: Mutex<Option<Vec<Process>>>,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until the apiserver is ready.
    pub fn start() -> anyhow::Result<Self> {
        let bins = bin_dir()?;
        for b in ["etcd", "kube-apiserver"] {
            if !bins.join(b).is_file() {
                bail!("{} is missing; run `make k8s-bins`", bins.join(b).display());
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("fhirlock-testenv-")
            .tempdir()?;
        let root = dir.path();
        let pki = Pki::generate()?;
        pki.write(root)?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let api_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let server = format!("https://127.0.0.1:{api_port}");
        let p = |f: &str| root.join(f).display().to_string();

        let etcd_args = vec![
            "--name=default".to_owned(),
            format!("--data-dir={}", p("etcd")),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        let api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", p("certs")),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            "--authorization-mode=RBAC".to_owned(),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--allow-privileged=true".to_owned(),
            // No controller-manager runs, so nothing would create the default ServiceAccount.
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            format!("--service-account-issuer={server}"),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            format!("--api-audiences={server},api://AzureADTokenExchange"),
            "--v=0".to_owned(),
        ];

        let etcd =
            Process::start(Spec::new(bins.join("etcd"), root.join("etcd.log")).args(etcd_args))?;
        let apiserver = Process::start(
            Spec::new(bins.join("kube-apiserver"), root.join("kube-apiserver.log")).args(api_args),
        )?;
        let plane = ControlPlane {
            dir,
            server,
            pki,
            etcd_url: etcd_url.clone(),
            processes: Mutex::new(Some(vec![etcd, apiserver])),
        };
        plane.write_kubeconfig()?;
        plane.wait_ready(&etcd_url)?;
        Ok(plane)
    }

    /// Directory holding certificates, logs and the kubeconfig; removed on stop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the admin kubeconfig (user `admin` in group `system:masters`).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A client with admin rights. Make one per async runtime: a client's connections belong to
    /// the runtime it was made on.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// A `kubectl` command pointed at this control plane.
    pub fn kubectl(&self) -> anyhow::Result<std::process::Command> {
        let mut cmd = std::process::Command::new(kubectl()?);
        cmd.env("KUBECONFIG", self.kubeconfig_path());
        // Its own discovery cache, so nothing lands in ~/.kube and no stale cache is shared.
        cmd.arg(format!(
            "--cache-dir={}",
            self.dir().join("kube-cache").display()
        ));
        Ok(cmd)
    }

    /// Process IDs of etcd and kube-apiserver while they run.
    pub fn pids(&self) -> Vec<u32> {
        self.processes()
            .as_ref()
            .map(|ps| ps.iter().map(Process::pid).collect())
            .unwrap_or_default()
    }

    fn processes(&self) -> std::sync::MutexGuard<'_, Option<Vec<Process>>> {
        self.processes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts kube-controller-manager's namespace controller, and nothing else of it, against this
    /// control plane (once; later calls do nothing). The apiserver alone only marks a deleted
    /// namespace `Terminating`: this controller deletes what is in it and then the namespace, so
    /// tests of what deleting a namespace does need it. Stopped with the control plane.
    pub fn start_namespace_controller(&self) -> anyhow::Result<()> {
        let mut processes = self.processes();
        let running = processes.as_mut().context("the control plane is stopped")?;
        if running.len() > 2 {
            return Ok(());
        }
        let program = bin_dir()?.join("kube-controller-manager");
        if !program.is_file() {
            bail!("{} is missing; run `make k8s-bins`", program.display());
        }
        let args = vec![
            format!("--kubeconfig={}", self.kubeconfig_path().display()),
            "--controllers=namespace".to_owned(),
            "--leader-elect=false".to_owned(),
            // Nothing scrapes it: no HTTPS port to find or collide on.
            "--secure-port=0".to_owned(),
            "--v=0".to_owned(),
        ];
        let log = self.dir().join("kube-controller-manager.log");
        running.push(Process::start(Spec::new(program, log).args(args))?);
        Ok(())
    }

    /// Kills etcd (SIGKILL) and starts it again on the same ports with the same data directory,
    /// then waits until the apiserver is ready again. Returns etcd's new pid.
    pub fn restart_etcd(&self) -> anyhow::Result<u32> {
        self.restart(0)
    }

    /// Kills kube-apiserver (SIGKILL) and starts it again on the same port with the same
    /// certificates and keys, then waits until it is ready. Returns its new pid.
    pub fn restart_apiserver(&self) -> anyhow::Result<u32> {
        self.restart(1)
    }

    fn restart(&self, index: usize) -> anyhow::Result<u32> {
        let pid = self
            .processes()
            .as_mut()
            .context("the control plane is stopped")?[index]
            .restart()?;
        self.wait_ready(&self.etcd_url)?;
        Ok(pid)
    }

    /// Stops both processes (the apiserver first; SIGTERM, then SIGKILL) and removes the
    /// directory. Idempotent.
    pub fn stop(&self) {
        if let Some(mut processes) = self.processes().take() {
            for p in processes.iter_mut().rev() {
                p.terminate(Duration::from_secs(5));
            }
            // A shared plane is never dropped, so the directory goes here rather than in TempDir's Drop.
            let _ = std::fs::remove_dir_all(self.dir.path());
        }
    }

    fn write_kubeconfig(&self) -> anyhow::Result<()> {
        let kubeconfig = kubeconfig_yaml(
            &self.server,
            &self.pki.ca_pem,
            &self.pki.admin_cert_pem,
            &self.pki.admin_key_pem,
        );
        std::fs::write(self.kubeconfig_path(), kubeconfig)?;
        Ok(())
    }

    fn wait_ready(&self, etcd_url: &str) -> anyhow::Result<()> {
        let timeout = std::env::var("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT")
            .ok()
            .and_then(|s| s.trim_end_matches('s').parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(90));
        let deadline = Instant::now() + timeout;
        // Its own thread and runtime, so start() works from sync code and from inside async tests.
        std::thread::scope(|scope| {
            scope
                .spawn(|| self.poll_ready(etcd_url, timeout, deadline))
                .join()
                .expect("readiness thread panicked")
        })
    }

    fn poll_ready(
        &self,
        etcd_url: &str,
        timeout: Duration,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let client = self.client().await?;
            let mut last_err = String::new();
            while Instant::now() < deadline {
                if let Some(exited) = self.exited_early() {
                    bail!(
                        "{exited}; see logs in {}\n{}",
                        self.dir().display(),
                        self.log_tail()
                    );
                }
                let req = http::Request::get("/readyz").body(Vec::new())?;
                match client.request_text(req).await {
                    Ok(body) if body.trim() == "ok" => return Ok(()),
                    Ok(body) => last_err = body,
                    Err(e) => last_err = e.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            bail!(
                "kube-apiserver not ready after {timeout:?} (etcd at {etcd_url}): {last_err}\n{}",
                self.log_tail()
            )
        })
    }

    /// A message if etcd or kube-apiserver exited on its own.
    fn exited_early(&self) -> Option<String> {
        let mut processes = self.processes();
        processes.as_mut()?.iter_mut().find_map(|p| {
            p.exited()
                .map(|st| format!("{} exited early with {st}", p.name()))
        })
    }

    /// The last lines of both logs, for error messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for name in ["etcd", "kube-apiserver"] {
            let log =
                std::fs::read_to_string(self.dir().join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<_> = log.lines().rev().take(15).collect();
            out.push_str(&format!("--- {name}.log (tail)\n"));
            for l in lines.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The control plane shared by every test in this test binary: started on first use, stopped
/// (processes ended, directory removed) when the process exits.
pub fn shared() -> &'static ControlPlane {
    static SHARED: OnceLock<ControlPlane> = OnceLock::new();
    SHARED.get_or_init(|| {
        let plane = ControlPlane::start()
            .unwrap_or_else(|e| panic!("starting the test control plane: {e:#}"));
        extern "C" fn stop_shared() {
            if let Some(p) = SHARED.get() {
                p.stop();
            }
        }
        // SAFETY: registering a plain extern "C" function; it only touches the OnceLock above.
        unsafe { libc::atexit(stop_shared) };
        plane
    })
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn kubeconfig_yaml(server: &str, ca: &str, cert: &str, key: &str) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: testenv
  context:
    cluster: testenv
    user: admin
    namespace: default
current-context: testenv
",
        ca = b64(ca),
        cert = b64(cert),
        key = b64(key),
    )
}
