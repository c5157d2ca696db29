//! HTTPS edge: TLS accept, HTTP/1.1, and the hand-off to the synchronous [`Engine`].

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::engine::{Engine, Outcome, Request};
use crate::jwt::SigningKey;
use crate::state::State;
use crate::util::now_ms;

#[derive(Debug, Clone)]
pub struct Options {
    pub addr: String,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub time_scale: f64,
    /// Extra names for the server certificate.
    pub hostnames: Vec<String>,
}

pub struct Running {
    pub addr: SocketAddr,
    pub arm_endpoint: String,
    pub authority_host: String,
    pub ca_path: PathBuf,
    pub tenant_id: String,
    pub subscription_id: String,
    pub engine: Arc<Mutex<Engine>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Running {
    /// The line printed on stdout when the emulator is ready.
    pub fn ready_line(&self) -> String {
        json!({
            "ready": true,
            "arm_endpoint": self.arm_endpoint,
            "authority_host": self.authority_host,
            "ca_path": self.ca_path,
            "tenant_id": self.tenant_id,
            "subscription_id": self.subscription_id,
            "pid": std::process::id(),
        })
        .to_string()
    }

    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

fn load_or_create_key(dir: &std::path::Path) -> Result<SigningKey, String> {
    let p = dir.join("token-signing-key.pk8");
    if let Ok(b) = std::fs::read(&p)
        && let Some(k) = SigningKey::from_pkcs8(&b)
    {
        return Ok(k);
    }
    let k = SigningKey::generate();
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, k.pkcs8()).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &p).map_err(|e| e.to_string())?;
    Ok(k)
}

/// Binds, prepares TLS and state, and starts serving in the background.
pub async fn start(opts: Options) -> Result<Running, String> {
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| format!("{}: {e}", opts.data_dir.display()))?;
    let cfg = match &opts.config {
        Some(p) => Config::load(p)?,
        None => Config::dev(),
    };
    let listener = tokio::net::TcpListener::bind(&opts.addr)
        .await
        .map_err(|e| format!("bind {}: {e}", opts.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let host = match addr.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let mut hosts = opts.hostnames.clone();
    hosts.push(addr.ip().to_string());
    let tls = crate::tls::setup(&opts.data_dir, &hosts)?;
    let base = format!("https://{host}:{}", addr.port());
    let key = load_or_create_key(&opts.data_dir)?;
    let state_path = opts.data_dir.join("state.json");
    let state = State::load(&state_path)
        .map_err(|e| format!("{}: {e}", state_path.display()))?
        .unwrap_or_default();
    let tenant_id = cfg
        .tenants
        .first()
        .map(|t| t.id.clone())
        .unwrap_or_default();
    let subscription_id = cfg.subscriptions.first().cloned().unwrap_or_default();
    let engine = Engine::new(
        cfg,
        opts.time_scale,
        base.clone(),
        key,
        state,
        Some(state_path),
    );
    let engine = Arc::new(Mutex::new(engine));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
    let ca_path = tls.ca_path.clone();

    // Finish operations even when nobody polls, so the persisted state stays current.
    {
        let engine = engine.clone();
        let mut rx = rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                    _ = rx.changed() => return,
                }
                let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
                if e.state.advance(now_ms()) {
                    e.persist();
                }
            }
        });
    }

    {
        let engine = engine.clone();
        let ca_path = ca_path.clone();
        let mut rx = rx.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = rx.changed() => return,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let engine = engine.clone();
                let ca_path = ca_path.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req| serve(engine.clone(), ca_path.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
    }

    Ok(Running {
        addr,
        arm_endpoint: base.clone(),
        authority_host: format!("{base}/"),
        ca_path,
        tenant_id,
        subscription_id,
        engine,
        shutdown: tx,
    })
}

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection dropped by fault injection")
    }
}
impl std::error::Error for Dropped {}

async fn serve(
    engine: Arc<Mutex<Engine>>,
    ca_path: PathBuf,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let method = req.method().as_str().to_string();
    let uri = req.uri().clone();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mut r = Request::new(
        &method,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
    );
    r.headers = headers;
    r.body = body;
    let mut attempts = 0;
    loop {
        let handled = {
            let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
            e.handle(&r, now_ms())
        };
        if handled.delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(handled.delay_ms)).await;
        }
        match handled.outcome {
            Outcome::Drop => return Err(Dropped),
            Outcome::Respond(resp) => {
                let mut b = hyper::Response::builder().status(resp.status);
                for (k, v) in &resp.headers {
                    b = b.header(k.as_str(), v.as_str());
                }
                return Ok(b.body(Full::new(Bytes::from(resp.body))).expect("response"));
            }
            Outcome::NeedJwks {
                url,
                ca_file,
                bearer_file,
            } => {
                attempts += 1;
                let fetched = crate::client::get_json(
                    &url,
                    ca_file.as_deref().map(std::path::Path::new),
                    &ca_path,
                    bearer_file.as_deref().map(std::path::Path::new),
                )
                .await;
                let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
                match fetched {
                    Ok(v) if attempts < 3 => {
                        e.jwks_cache.insert(url, v);
                    }
                    other => {
                        let msg = match other {
                            Err(err) => err,
                            Ok(_) => "keys did not verify the assertion".into(),
                        };
                        let body = json!({"error": "invalid_client", "error_description": format!("AADSTS50027: [emulator] could not obtain the issuer's keys: {msg}"), "error_codes": [50027]});
                        return Ok(hyper::Response::builder()
                            .status(400)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())))
                            .expect("response"));
                    }
                }
            }
        }
    }
}
