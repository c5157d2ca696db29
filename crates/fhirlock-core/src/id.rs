//! ARM resource IDs. ARM treats them case-insensitively, so comparisons here do too.

/// Two resource IDs name the same resource.
pub fn same(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// The parts of `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}]…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceId {
    pub subscription: String,
    pub resource_group: String,
    pub namespace: String,
    /// (type, name) pairs from the provider down, e.g. [("virtualNetworks","v"),("subnets","s")].
    pub segments: Vec<(String, String)>,
}

impl ResourceId {
    pub fn parse(id: &str) -> Option<Self> {
        let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
        if parts.len() < 8
            || !parts[0].eq_ignore_ascii_case("subscriptions")
            || !parts[2].eq_ignore_ascii_case("resourceGroups")
            || !parts[4].eq_ignore_ascii_case("providers")
            || !parts[6..].len().is_multiple_of(2)
        {
            return None;
        }
        let segments = parts[6..]
            .chunks(2)
            .map(|c| (c[0].to_owned(), c[1].to_owned()))
            .collect();
        Some(ResourceId {
            subscription: parts[1].to_owned(),
            resource_group: parts[3].to_owned(),
            namespace: parts[5].to_owned(),
            segments,
        })
    }

    /// The last segment's name.
    pub fn name(&self) -> &str {
        &self.segments.last().expect("at least one segment").1
    }

    /// `Microsoft.Network/virtualNetworks/subnets` style type.
    pub fn resource_type(&self) -> String {
        let mut t = self.namespace.clone();
        for (ty, _) in &self.segments {
            t.push('/');
            t.push_str(ty);
        }
        t
    }
}

/// `{vnet_id}/subnets/{name}`.
pub fn subnet_id(vnet_id: &str, name: &str) -> String {
    format!("{}/subnets/{name}", vnet_id.trim_end_matches('/'))
}

/// The resource group's ID.
pub fn resource_group_id(subscription: &str, resource_group: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{resource_group}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_ids_and_compares_without_case() {
        let id = ResourceId::parse("/subscriptions/S/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s")
            .unwrap();
        assert_eq!(id.name(), "s");
        assert_eq!(
            id.resource_type(),
            "Microsoft.Network/virtualNetworks/subnets"
        );
        assert!(same(
            "/subscriptions/S/resourceGroups/RG/x",
            "/subscriptions/s/resourcegroups/rg/X/"
        ));
        assert!(ResourceId::parse("/subscriptions/S/resourceGroups/rg").is_none());
        assert!(
            ResourceId::parse("/subscriptions/S/resourceGroups/rg/providers/Microsoft.Web/sites")
                .is_none()
        );
    }
}
