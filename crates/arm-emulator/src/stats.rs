//! Request counters for `/_emulator/stats`: exact counts by method, resource type, principal and status.

use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Stats {
    counts: BTreeMap<(String, String, String, u16), u64>,
}

impl Stats {
    pub fn record(&mut self, method: &str, rtype: &str, principal: &str, status: u16) {
        *self
            .counts
            .entry((
                method.to_string(),
                rtype.to_string(),
                principal.to_string(),
                status,
            ))
            .or_default() += 1;
    }

    pub fn reset(&mut self) {
        self.counts.clear();
    }

    /// `{"total", "reads", "writes", "deletes", "byMethod", "byResourceType", "byPrincipal", "byStatus", "entries":[…]}`.
    /// reads = GET/HEAD, writes = PUT/PATCH/POST, deletes = DELETE; all ARM requests (including
    /// operation polls), not token or control requests.
    pub fn to_json(&self) -> Value {
        let mut by_method: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_principal: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let (mut reads, mut writes, mut deletes, mut total) = (0, 0, 0, 0);
        let mut entries = vec![];
        for ((m, t, p, s), n) in &self.counts {
            *by_method.entry(m.clone()).or_default() += n;
            *by_type.entry(t.clone()).or_default() += n;
            *by_principal.entry(p.clone()).or_default() += n;
            *by_status.entry(s.to_string()).or_default() += n;
            total += n;
            match m.as_str() {
                "GET" | "HEAD" => reads += n,
                "DELETE" => deletes += n,
                _ => writes += n,
            }
            entries.push(
                json!({"method": m, "resourceType": t, "principal": p, "status": s, "count": n}),
            );
        }
        json!({
            "total": total, "reads": reads, "writes": writes, "deletes": deletes,
            "byMethod": by_method, "byResourceType": by_type, "byPrincipal": by_principal,
            "byStatus": by_status, "entries": entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_are_exact() {
        let mut s = Stats::default();
        s.record("GET", "Microsoft.Web/sites", "p1", 200);
        s.record("GET", "Microsoft.Web/sites", "p1", 200);
        s.record(
            "PUT",
            "Microsoft.Network/virtualNetworks/subnets",
            "p2",
            201,
        );
        s.record(
            "DELETE",
            "Microsoft.Network/virtualNetworks/subnets",
            "p2",
            202,
        );
        let j = s.to_json();
        assert_eq!(j["total"], 4);
        assert_eq!(j["reads"], 2);
        assert_eq!(j["writes"], 1);
        assert_eq!(j["deletes"], 1);
        assert_eq!(j["byPrincipal"]["p2"], 2);
        assert_eq!(j["byStatus"]["200"], 2);
        s.reset();
        assert_eq!(s.to_json()["total"], 0);
    }
}
