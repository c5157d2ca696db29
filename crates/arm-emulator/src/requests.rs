//! The request log behind `GET /_emulator/requests`: the last ARM requests the emulator received
//! (who, method, resource id, api-version, status and, for PUT/PATCH/POST, the JSON body), so a
//! test can hold what a client *sent* to Microsoft's own models (issue #12,
//! `tests/emulator-conformance/check_bodies.py`). Token-endpoint and control requests are never
//! recorded, and secrets are replaced by `"<redacted>"` before anything is kept.

use serde::Serialize;
use serde_json::{Value, json};
use std::collections::VecDeque;

/// How many requests are kept; older ones are dropped (and counted in `dropped`).
pub const DEFAULT_CAPACITY: usize = 10_000;
pub const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// 1, 2, 3… since the emulator started (not reset by a clear).
    pub seq: u64,
    pub time: String,
    /// The caller's object id, or `anonymous` without a valid token.
    pub principal: String,
    pub method: String,
    /// The request path without the query: the resource id for resource requests.
    pub path: String,
    pub resource_type: String,
    pub api_version: Option<String>,
    /// The answer's status; `0` for a connection dropped by a fault.
    pub status: u16,
    /// PUT/PATCH/POST only: the JSON body with secrets redacted (`null` when there was none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

#[derive(Debug)]
pub struct RequestLog {
    entries: VecDeque<Recorded>,
    capacity: usize,
    next_seq: u64,
    dropped: u64,
}

impl Default for RequestLog {
    fn default() -> Self {
        RequestLog::with_capacity(DEFAULT_CAPACITY)
    }
}

/// What one request contributes to the log, before it gets a sequence number.
pub struct Entry<'a> {
    pub time: String,
    pub principal: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub resource_type: &'a str,
    pub api_version: Option<&'a str>,
    pub status: u16,
    pub body: &'a [u8],
}

impl RequestLog {
    pub fn with_capacity(capacity: usize) -> RequestLog {
        RequestLog {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 1,
            dropped: 0,
        }
    }

    pub fn record(&mut self, e: Entry<'_>) {
        let body = matches!(e.method, "PUT" | "PATCH" | "POST").then(|| recorded_body(e.body));
        let r = Recorded {
            seq: self.next_seq,
            time: e.time,
            principal: e.principal.to_string(),
            method: e.method.to_string(),
            path: e.path.to_string(),
            resource_type: e.resource_type.to_string(),
            api_version: e.api_version.map(str::to_string),
            status: e.status,
            body,
        };
        self.next_seq += 1;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(r);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.dropped = 0;
    }

    pub fn entries(&self) -> impl Iterator<Item = &Recorded> {
        self.entries.iter()
    }

    /// `{"capacity", "dropped", "requests": [...]}`; `writes_only` keeps PUT/PATCH/POST.
    pub fn to_json(&self, writes_only: bool) -> Value {
        let requests: Vec<&Recorded> = self
            .entries
            .iter()
            .filter(|r| !writes_only || r.body.is_some())
            .collect();
        json!({"capacity": self.capacity, "dropped": self.dropped, "requests": requests})
    }
}

/// The body as recorded: parsed JSON with secrets redacted, `null` when empty, and a note (never
/// the bytes) when it is not JSON.
fn recorded_body(raw: &[u8]) -> Value {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    match serde_json::from_slice::<Value>(raw) {
        Ok(mut v) => {
            redact(&mut v);
            v
        }
        Err(_) => Value::String(format!("<not JSON: {} bytes>", raw.len())),
    }
}

/// Replaces secrets, wherever they are: any key naming a password (`password`,
/// `publishingPassword`, …), `secret` / `clientSecret`, an App Service certificate's `pfxBlob`
/// (Web 2024-11-01 `Certificate`: the PFX with its private key), and the PFX `data` of an
/// Application Gateway `sslCertificates[]` entry. Key Vault references (`keyVaultSecretId`) are
/// not secrets.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                let lower = k.to_ascii_lowercase();
                if !x.is_null()
                    && (lower.contains("password")
                        || lower == "secret"
                        || lower == "clientsecret"
                        || lower == "pfxblob")
                {
                    *x = json!(REDACTED);
                    continue;
                }
                if lower == "sslcertificates"
                    && let Some(a) = x.as_array_mut()
                {
                    for cert in a.iter_mut() {
                        if let Some(p) = cert.get_mut("properties") {
                            redact_pfx(p);
                        }
                        redact_pfx(cert);
                    }
                }
                redact(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The PFX payload of one certificate object (`data`, in any casing).
fn redact_pfx(cert: &mut Value) {
    if let Some(o) = cert.as_object_mut() {
        for (k, x) in o.iter_mut() {
            if k.eq_ignore_ascii_case("data") && !x.is_null() {
                *x = json!(REDACTED);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(method: &'a str, body: &'a [u8]) -> Entry<'a> {
        Entry {
            time: "2026-01-01T00:00:00Z".into(),
            principal: "p1",
            method,
            path: "/subscriptions/s/resourceGroups/g",
            resource_type: "resourceGroups",
            api_version: Some("2024-11-01"),
            status: 200,
            body,
        }
    }

    #[test]
    fn keeps_the_last_n_and_counts_what_it_dropped() {
        let mut log = RequestLog::with_capacity(2);
        for m in ["GET", "PUT", "PATCH"] {
            log.record(entry(m, b"{}"));
        }
        let j = log.to_json(false);
        assert_eq!(j["dropped"], 1);
        let seqs: Vec<u64> = log.entries().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
        log.clear();
        assert_eq!(log.to_json(false)["requests"], json!([]));
        log.record(entry("GET", b""));
        assert_eq!(log.entries().next().map(|r| r.seq), Some(4));
    }

    #[test]
    fn bodies_only_for_writes_and_writes_only_filter() {
        let mut log = RequestLog::default();
        log.record(entry("GET", b"{\"a\":1}"));
        log.record(entry("PUT", b"{\"a\":1}"));
        log.record(entry("POST", b""));
        log.record(entry("PATCH", b"not json"));
        let all = log.to_json(false);
        assert!(all["requests"][0].get("body").is_none());
        assert_eq!(all["requests"][1]["body"], json!({"a": 1}));
        assert_eq!(all["requests"][2]["body"], Value::Null);
        assert_eq!(all["requests"][3]["body"], "<not JSON: 8 bytes>");
        assert_eq!(all["requests"][1]["apiVersion"], "2024-11-01");
        assert_eq!(
            log.to_json(true)["requests"].as_array().map(Vec::len),
            Some(3)
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let cases = [
            (
                json!({"properties": {"sslCertificates": [{"name": "c", "properties": {"data": "MIIK", "password": "pw"}}]}}),
                json!({"properties": {"sslCertificates": [{"name": "c", "properties": {"data": REDACTED, "password": REDACTED}}]}}),
            ),
            (
                json!({"properties": {"sslCertificates": [{"name": "c", "properties": {"keyVaultSecretId": "https://kv/secrets/x"}}]}}),
                json!({"properties": {"sslCertificates": [{"name": "c", "properties": {"keyVaultSecretId": "https://kv/secrets/x"}}]}}),
            ),
            (
                json!({"properties": {"siteConfig": {"publishingPassword": "x", "clientSecret": "y", "secret": null}}}),
                json!({"properties": {"siteConfig": {"publishingPassword": REDACTED, "clientSecret": REDACTED, "secret": null}}}),
            ),
            (
                json!({"location": "uksouth", "properties": {"pfxBlob": "MIIK", "password": "pw", "serverFarmId": "/f"}}),
                json!({"location": "uksouth", "properties": {"pfxBlob": REDACTED, "password": REDACTED, "serverFarmId": "/f"}}),
            ),
            (
                // `data` outside a certificate (e.g. a trusted root's public data elsewhere) is kept.
                json!({"properties": {"trustedRootCertificates": [{"properties": {"data": "pub"}}]}}),
                json!({"properties": {"trustedRootCertificates": [{"properties": {"data": "pub"}}]}}),
            ),
        ];
        for (mut input, want) in cases {
            redact(&mut input);
            assert_eq!(input, want);
        }
    }
}
