//! ARM resource ids: parsing request paths into (subscription, group, provider, type chain, names).

/// Canonical spellings of the resource types the emulator knows (ARM is case-insensitive on the
/// wire; responses use these).
const TYPES: &[&str] = &[
    "Microsoft.Network/virtualNetworks",
    "Microsoft.Network/virtualNetworks/subnets",
    "Microsoft.Network/applicationGateways",
    "Microsoft.Network/publicIPAddresses",
    "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies",
    "Microsoft.Web/serverfarms",
    "Microsoft.Web/sites",
    "Microsoft.Web/sites/config",
    "Microsoft.Web/sites/networkConfig",
    "Microsoft.Web/sites/hostNameBindings",
    "Microsoft.Web/certificates",
    "Microsoft.DocumentDB/databaseAccounts",
];

pub fn canonical_type(t: &str) -> Option<&'static str> {
    TYPES.iter().copied().find(|c| c.eq_ignore_ascii_case(t))
}

/// A parsed `/subscriptions/...` path.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmPath {
    pub subscription: String,
    pub resource_group: Option<String>,
    /// `Microsoft.Network` etc., for `/providers/...` paths.
    pub namespace: Option<String>,
    /// Type segments after the namespace (`virtualNetworks`, `subnets`).
    pub types: Vec<String>,
    /// Names; one fewer than `types` for a collection (list) path.
    pub names: Vec<String>,
    /// Trailing segments after a known action position (e.g. `register`), if any.
    pub action: Option<String>,
}

impl ArmPath {
    pub fn parse(path: &str) -> Option<ArmPath> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        if segs.len() < 2 || !segs[0].eq_ignore_ascii_case("subscriptions") || segs[1].is_empty() {
            return None;
        }
        let mut p = ArmPath {
            subscription: segs[1].to_string(),
            resource_group: None,
            namespace: None,
            types: vec![],
            names: vec![],
            action: None,
        };
        let mut i = 2;
        if segs.len() == 3 && segs[2].eq_ignore_ascii_case("resourceGroups") {
            // The subscription's resource-group collection.
            p.types.push("resourceGroups".into());
            return Some(p);
        }
        if i < segs.len() && segs[i].eq_ignore_ascii_case("resourceGroups") {
            p.resource_group = Some(segs.get(i + 1)?.to_string());
            i += 2;
        }
        if i < segs.len() {
            if !segs[i].eq_ignore_ascii_case("providers") {
                // e.g. /subscriptions/{s}/operationresults/{id}
                p.types = segs[i..].iter().step_by(2).map(|s| s.to_string()).collect();
                p.names = segs[i + 1..]
                    .iter()
                    .step_by(2)
                    .map(|s| s.to_string())
                    .collect();
                return Some(p);
            }
            p.namespace = Some(segs.get(i + 1)?.to_string());
            let rest = &segs[i + 2..];
            for (k, s) in rest.iter().enumerate() {
                if k % 2 == 0 {
                    p.types.push(s.to_string());
                } else {
                    p.names.push(s.to_string());
                }
            }
        }
        Some(p)
    }

    /// `Microsoft.Network/virtualNetworks/subnets`, or `resourceGroups` / `subscriptions`.
    pub fn type_name(&self) -> String {
        match &self.namespace {
            Some(ns) => {
                let raw = format!("{ns}/{}", self.types.join("/"));
                canonical_type(&raw).map(str::to_string).unwrap_or(raw)
            }
            None if self.resource_group.is_some() && self.types.is_empty() => {
                "resourceGroups".into()
            }
            None if self.types.is_empty() => "subscriptions".into(),
            None if self.types.len() == 1
                && self.types[0].eq_ignore_ascii_case("resourceGroups") =>
            {
                "resourceGroups".into()
            }
            None => self.types.join("/"),
        }
    }

    pub fn is_collection(&self) -> bool {
        self.names.len() < self.types.len()
            || (self.namespace.is_none() && self.resource_group.is_none() && self.types.is_empty())
    }

    /// The canonical id of the addressed resource (types spelt canonically, names as given).
    pub fn id(&self) -> String {
        let mut s = format!("/subscriptions/{}", self.subscription);
        if let Some(rg) = &self.resource_group {
            s.push_str(&format!("/resourceGroups/{rg}"));
        }
        if let Some(ns) = &self.namespace {
            let canon = canonical_type(&format!("{ns}/{}", self.types.join("/")));
            let canon_types: Vec<String> = match canon {
                Some(c) => c.split('/').skip(1).map(str::to_string).collect(),
                None => self.types.clone(),
            };
            let ns = canon
                .map(|c| c.split('/').next().unwrap_or(ns).to_string())
                .unwrap_or(ns.clone());
            s.push_str(&format!("/providers/{ns}"));
            for (t, n) in canon_types.iter().zip(self.names.iter()) {
                s.push_str(&format!("/{t}/{n}"));
            }
        }
        s
    }

    pub fn name(&self) -> String {
        self.names.last().cloned().unwrap_or_default()
    }

    /// For POST actions: the last path segment (`register`, `start`, …).
    pub fn action_name(&self) -> String {
        if self.types.len() > self.names.len() {
            self.types.last().cloned().unwrap_or_default()
        } else {
            "action".into()
        }
    }
}

/// Lower-cased key for a resource id (ARM ids compare case-insensitively).
pub fn key(id: &str) -> String {
    id.trim_end_matches('/').to_ascii_lowercase()
}

/// Parent id (drop the last type/name pair).
pub fn parent(id: &str) -> String {
    let segs: Vec<&str> = id.trim_end_matches('/').split('/').collect();
    segs[..segs.len().saturating_sub(2)].join("/")
}

/// Resource group id of any id inside a resource group.
pub fn resource_group_id(id: &str) -> Option<String> {
    let segs: Vec<&str> = id.split('/').collect();
    if segs.len() >= 5 && segs[3].eq_ignore_ascii_case("resourceGroups") {
        Some(format!(
            "/subscriptions/{}/resourceGroups/{}",
            segs[2], segs[4]
        ))
    } else {
        None
    }
}

/// Whether `scope` covers `id` (equal or an ancestor on a segment boundary).
pub fn scope_covers(scope: &str, id: &str) -> bool {
    let s = key(scope);
    let i = key(id);
    i == s || i.starts_with(&format!("{s}/")) || s.is_empty() || s == "/"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resource_paths_table() {
        let cases = [
            (
                "/subscriptions/s/resourceGroups/rg/providers/microsoft.network/VIRTUALNETWORKS/v/subnets/a",
                "Microsoft.Network/virtualNetworks/subnets",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/a",
                false,
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets",
                "Microsoft.Network/virtualNetworks/subnets",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v",
                true,
            ),
            (
                "/subscriptions/s/resourcegroups/rg",
                "resourceGroups",
                "/subscriptions/s/resourceGroups/rg",
                false,
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/config/web",
                "Microsoft.Web/sites/config",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/config/web",
                false,
            ),
        ];
        for (path, ty, id, coll) in cases {
            let p = ArmPath::parse(path).unwrap();
            assert_eq!(p.type_name(), ty, "{path}");
            assert_eq!(p.id(), id, "{path}");
            assert_eq!(p.is_collection(), coll, "{path}");
        }
        assert!(ArmPath::parse("/providers/x").is_none());
    }

    #[test]
    fn scope_covers_respects_segment_boundaries() {
        assert!(scope_covers(
            "/subscriptions/S",
            "/subscriptions/s/resourceGroups/x"
        ));
        assert!(!scope_covers(
            "/subscriptions/s/resourceGroups/fhir",
            "/subscriptions/s/resourceGroups/fhir2"
        ));
        assert_eq!(parent("/a/b/c/d/e"), "/a/b/c");
        assert_eq!(
            resource_group_id("/subscriptions/s/resourceGroups/rg/providers/X/y/z").unwrap(),
            "/subscriptions/s/resourceGroups/rg"
        );
    }
}
