//! The emulated estate and its durability: one JSON document, written atomically (temp file,
//! fsync, rename, fsync directory) before any write is acknowledged, so `kill -9` loses nothing
//! that was accepted. Operations carry wall-clock deadlines, so after a restart they finish.
//! Secrets that Azure accepts but never returns are not kept (`without_secrets`), and the file is
//! created owner-only (0600).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::ids;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Keyed by lower-cased id.
    pub resources: BTreeMap<String, Resource>,
    /// Keyed by operation id.
    pub operations: BTreeMap<String, Operation>,
    /// Feature registrations keyed by lower-cased `{sub}/{namespace}/{name}`.
    pub features: BTreeMap<String, Feature>,
    /// Monotonic counter for etags.
    pub etag_seq: u64,
    /// The emulated public DNS: TXT records by lower-cased name (`POST /_emulator/dns`), which
    /// App Service's domain verification reads (`engine/host_names.rs`).
    #[serde(default)]
    pub dns_txt: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub id: String,
    pub rtype: String,
    /// What clients wrote (read-only fields stripped, unknown fields kept).
    pub body: Value,
    pub provisioning_state: String,
    pub etag: String,
    /// Operation currently running on this resource.
    #[serde(default)]
    pub pending_op: Option<String>,
    /// Cosmos: network settings as the data plane sees them, `(effective_from_ms, settings)`.
    #[serde(default)]
    pub firewall_history: Vec<(u64, Value)>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OpKind {
    Create,
    Update,
    Delete,
    Register,
    Unregister,
    /// A POST action that reads (backend health): it locks nothing and changes no resource; its
    /// answer is `Operation::result`.
    Action,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub id: String,
    pub kind: OpKind,
    /// Resource id (or feature key for registrations).
    pub resource_id: String,
    pub rtype: String,
    pub subscription: String,
    pub namespace: String,
    pub location: String,
    pub api_version: String,
    pub start_ms: u64,
    pub due_ms: u64,
    /// `InProgress`, `Succeeded`, `Failed`.
    pub status: String,
    #[serde(default)]
    pub end_ms: Option<u64>,
    /// Error to end with (injected failure), or the error it ended with.
    #[serde(default)]
    pub error: Option<Value>,
    /// An action's final answer (the body of the last `Location` poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Feature {
    pub subscription: String,
    pub namespace: String,
    pub name: String,
    pub state: String,
}

/// A resource body as the emulator keeps it: without the write-only secrets in it. Azure takes a
/// gateway certificate's PFX and its password on PUT and never returns them (the
/// `ApplicationGatewaySslCertificatePropertiesFormat` model: `data` and `password` are "Only
/// applicable in PUT Request", `publicCertData` "Only applicable in GET request"), so nothing the
/// emulator answers needs them, and they stay out of `state.json` and `/_emulator/state`. A Key
/// Vault secret id is a reference, not a secret: it stays.
pub fn without_secrets(rtype: &str, mut body: Value) -> Value {
    // An App Service certificate's PFX and password are write-only too (`pfxBlob`, `password`,
    // Web 2024-11-01 `Certificates.json`; the password is create-only and never returned).
    if rtype.eq_ignore_ascii_case("Microsoft.Web/certificates")
        && let Some(Value::Object(p)) = body.get_mut("properties")
    {
        p.remove("pfxBlob");
        p.remove("password");
    }
    if rtype.eq_ignore_ascii_case("Microsoft.Network/applicationGateways")
        && let Some(Value::Array(certs)) = body
            .get_mut("properties")
            .and_then(|p| p.get_mut("sslCertificates"))
    {
        for cert in certs {
            if let Some(Value::Object(p)) = cert.get_mut("properties") {
                p.remove("data");
                p.remove("password");
            }
        }
    }
    body
}

/// What one operation looks like at time `now` (pure LRO state machine).
pub fn op_status_at(op: &Operation, now_ms: u64) -> &'static str {
    if op.status != "InProgress" {
        return if op.status == "Succeeded" {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    if now_ms < op.due_ms {
        "InProgress"
    } else if op.error.is_some() {
        "Failed"
    } else {
        "Succeeded"
    }
}

impl State {
    pub fn next_etag(&mut self) -> String {
        self.etag_seq += 1;
        let n = self.etag_seq;
        format!("W/\"{:08x}-0000-4000-8000-{:012x}\"", n as u32, n)
    }

    pub fn get(&self, id: &str) -> Option<&Resource> {
        self.resources.get(&ids::key(id))
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Resource> {
        self.resources.get_mut(&ids::key(id))
    }

    /// Direct children of a type under a parent (`subnets` of a VNet).
    pub fn children<'a>(
        &'a self,
        parent: &str,
        rtype: &'a str,
    ) -> impl Iterator<Item = &'a Resource> + 'a {
        let p = ids::key(parent);
        self.resources.values().filter(move |r| {
            r.rtype.eq_ignore_ascii_case(rtype) && ids::key(&ids::parent(&r.id)) == p
        })
    }

    pub fn of_type<'a>(&'a self, rtype: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources
            .values()
            .filter(move |r| r.rtype.eq_ignore_ascii_case(rtype))
    }

    /// Running operation that locks `id` (the resource itself or anything it names in `lock_ids`).
    pub fn running_op_on(&self, lock_ids: &[String], now_ms: u64) -> Option<&Operation> {
        let keys: Vec<String> = lock_ids.iter().map(|i| ids::key(i)).collect();
        self.operations.values().find(|op| {
            op_status_at(op, now_ms) == "InProgress"
                && !matches!(
                    op.kind,
                    OpKind::Register | OpKind::Unregister | OpKind::Action
                )
                && keys.iter().any(|k| {
                    let rk = ids::key(&op.resource_id);
                    &rk == k || rk.starts_with(&format!("{k}/")) || k.starts_with(&format!("{rk}/"))
                })
        })
    }

    /// Finishes every operation whose deadline has passed. Returns whether anything changed.
    pub fn advance(&mut self, now_ms: u64) -> bool {
        let due: Vec<String> = self
            .operations
            .values()
            .filter(|o| o.status == "InProgress" && o.due_ms <= now_ms)
            .map(|o| o.id.clone())
            .collect();
        for id in &due {
            let op = self.operations.get(id).cloned().expect("op");
            let failed = op.error.is_some();
            match op.kind {
                OpKind::Register | OpKind::Unregister => {
                    if let Some(f) = self.features.get_mut(&op.resource_id) {
                        f.state = if op.kind == OpKind::Register {
                            "Registered"
                        } else {
                            "NotRegistered"
                        }
                        .into();
                    }
                }
                OpKind::Action => {}
                OpKind::Delete if !failed => {
                    let k = ids::key(&op.resource_id);
                    self.resources
                        .retain(|rk, _| rk != &k && !rk.starts_with(&format!("{k}/")));
                }
                _ => {
                    let etag = self.next_etag();
                    if let Some(r) = self.get_mut(&op.resource_id) {
                        r.provisioning_state = if failed { "Failed" } else { "Succeeded" }.into();
                        r.etag = etag;
                        if r.pending_op.as_deref() == Some(id) {
                            r.pending_op = None;
                        }
                    }
                }
            }
            if failed
                && op.kind == OpKind::Delete
                && let Some(r) = self.get_mut(&op.resource_id)
            {
                r.provisioning_state = "Failed".into();
                r.pending_op = None;
            }
            let o = self.operations.get_mut(id).expect("op");
            o.status = if failed { "Failed" } else { "Succeeded" }.into();
            o.end_ms = Some(o.due_ms);
        }
        !due.is_empty()
    }

    /// Reads the state; secrets written by an older emulator are dropped (and gone from the file
    /// at the next save).
    pub fn load(path: &Path) -> std::io::Result<Option<State>> {
        let mut state: State = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        for r in state.resources.values_mut() {
            r.body = without_secrets(&r.rtype, std::mem::take(&mut r.body));
        }
        Ok(Some(state))
    }

    /// Writes the state atomically, owner-only: the temporary file is created with mode 0600 (a
    /// left-over one is removed first, as it may have other permissions) and renamed over `path`.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let mut f = o.open(&tmp)?;
            f.write_all(&serde_json::to_vec(self)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(kind: OpKind, rid: &str, due: u64, error: Option<Value>) -> Operation {
        Operation {
            id: "op1".into(),
            kind,
            resource_id: rid.into(),
            rtype: "t".into(),
            subscription: "s".into(),
            namespace: "Microsoft.Network".into(),
            location: "uksouth".into(),
            api_version: "v".into(),
            start_ms: 0,
            due_ms: due,
            status: "InProgress".into(),
            end_ms: None,
            error,
            result: None,
        }
    }

    fn res(id: &str) -> Resource {
        Resource {
            id: id.into(),
            rtype: "t".into(),
            body: json!({}),
            provisioning_state: "Updating".into(),
            etag: String::new(),
            pending_op: Some("op1".into()),
            firewall_history: vec![],
        }
    }

    #[test]
    fn lro_state_machine_table() {
        // (kind, error, now, expected status, resource state after advance (None = gone))
        let cases = [
            (OpKind::Create, None, 5, "InProgress", Some("Updating")),
            (OpKind::Create, None, 10, "Succeeded", Some("Succeeded")),
            (
                OpKind::Update,
                Some(json!({"code":"X"})),
                10,
                "Failed",
                Some("Failed"),
            ),
            (OpKind::Delete, None, 10, "Succeeded", None),
            (
                OpKind::Delete,
                Some(json!({"code":"X"})),
                10,
                "Failed",
                Some("Failed"),
            ),
        ];
        for (kind, error, now, want, after) in cases {
            let mut s = State::default();
            s.resources.insert("/a/b".into(), res("/a/b"));
            s.resources.insert("/a/b/c/d".into(), res("/a/b/c/d"));
            let o = op(kind, "/a/b", 10, error);
            assert_eq!(op_status_at(&o, now), want, "{kind:?}@{now}");
            s.operations.insert("op1".into(), o);
            s.advance(now);
            assert_eq!(
                s.get("/a/b").map(|r| r.provisioning_state.as_str()),
                after,
                "{kind:?}@{now}"
            );
            if kind == OpKind::Delete && want == "Succeeded" {
                assert!(s.get("/a/b/c/d").is_none(), "children go with the parent");
            }
            assert_eq!(
                op_status_at(&s.operations["op1"], now + 100),
                if want == "InProgress" {
                    "Succeeded"
                } else {
                    want
                }
            );
        }
    }

    #[test]
    fn save_load_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        let mut s = State::default();
        s.resources.insert("/a/b".into(), res("/a/b"));
        s.save(&p).unwrap();
        let back = State::load(&p).unwrap().unwrap();
        assert_eq!(back.resources, s.resources);
        assert!(
            State::load(&dir.path().join("none.json"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn without_secrets_table() {
        let agw = "Microsoft.Network/applicationGateways";
        let cert =
            |p: Value| json!({"properties": {"sslCertificates": [{"name": "c", "properties": p}]}});
        // (type, body, expected)
        let cases = [
            (
                agw,
                cert(json!({"data": "PFX", "password": "pw", "x": 1})),
                cert(json!({"x": 1})),
            ),
            (
                "microsoft.network/APPLICATIONGATEWAYS",
                cert(json!({"data": "PFX"})),
                cert(json!({})),
            ),
            (
                agw,
                cert(json!({"keyVaultSecretId": "https://v.vault.azure.net/secrets/s"})),
                cert(json!({"keyVaultSecretId": "https://v.vault.azure.net/secrets/s"})),
            ),
            // Public certificates (trusted roots) are not secrets.
            (
                agw,
                json!({"properties": {"trustedRootCertificates": [{"name": "r", "properties": {"data": "CER"}}]}}),
                json!({"properties": {"trustedRootCertificates": [{"name": "r", "properties": {"data": "CER"}}]}}),
            ),
            (
                agw,
                json!({"location": "uksouth"}),
                json!({"location": "uksouth"}),
            ),
            (
                "Microsoft.Web/sites",
                cert(json!({"data": "PFX"})),
                cert(json!({"data": "PFX"})),
            ),
        ];
        for (rtype, body, want) in cases {
            assert_eq!(without_secrets(rtype, body.clone()), want, "{rtype} {body}");
        }
    }

    #[test]
    fn running_op_locks_related_ids() {
        let mut s = State::default();
        s.operations
            .insert("op1".into(), op(OpKind::Update, "/s/v/subnets/a", 10, None));
        assert!(s.running_op_on(&["/s/v".into()], 5).is_some());
        assert!(s.running_op_on(&["/s/v/subnets/A".into()], 5).is_some());
        assert!(s.running_op_on(&["/s/w".into()], 5).is_none());
        assert!(s.running_op_on(&["/s/v".into()], 10).is_none());
    }
}
