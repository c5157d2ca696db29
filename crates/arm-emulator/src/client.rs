//! A minimal HTTPS/1.1 client (one request per connection), used to fetch an issuer's JWKS and by
//! the integration tests. Deliberately small: the emulator must not depend on a full HTTP stack.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::path::Path;
use std::sync::Arc;

pub struct ClientResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ClientResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends one request to an `https://host:port/path` URL; `tls` trusts the server's CA.
pub async fn request(
    tls: Arc<rustls::ClientConfig>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<ClientResponse, String> {
    let rest = url.strip_prefix("https://").ok_or("only https:// URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = if authority.starts_with('[') {
        authority
            .split(']')
            .next()
            .unwrap_or("")
            .trim_start_matches('[')
            .to_string()
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority)
            .to_string()
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(ClientResponse {
        status,
        headers,
        body,
    })
}

/// GET a JSON document over HTTPS trusting `ca_file` (or the emulator's own CA when absent).
pub async fn get_json(
    url: &str,
    ca_file: Option<&Path>,
    fallback_ca: &Path,
    bearer_file: Option<&Path>,
) -> Result<serde_json::Value, String> {
    let cfg = crate::tls::client_config(ca_file.unwrap_or(fallback_ca))?;
    // Read on every fetch: projected service-account tokens rotate.
    let auth = match bearer_file {
        Some(p) => Some(format!(
            "Bearer {}",
            std::fs::read_to_string(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .trim()
        )),
        None => None,
    };
    let mut headers = vec![("accept", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let r = request(cfg, "GET", url, &headers, vec![]).await?;
    if r.status != 200 {
        return Err(format!("GET {url}: HTTP {}", r.status));
    }
    serde_json::from_slice(&r.body).map_err(|e| format!("GET {url}: {e}"))
}
