//! What an ARM path names: its subscription and its resource type (for budgets and metrics).

/// The subscription id in `/subscriptions/{id}/…` (case preserved), if any.
pub fn subscription_of(path: &str) -> Option<&str> {
    let mut it = path.trim_start_matches('/').split('/');
    match (it.next(), it.next()) {
        (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") && !id.is_empty() => {
            Some(id)
        }
        _ => None,
    }
}

/// The fully-qualified resource type of an ARM path, e.g.
/// `Microsoft.Network/virtualNetworks/subnets` for a subnet,
/// `Microsoft.Resources/resourceGroups` for a group,
/// `Microsoft.Network/locations/operations` for an operation status URL,
/// `Microsoft.Features/providers/features/register` for an action. A path without a provider
/// segment gives `Microsoft.Resources/subscriptions…`.
pub fn resource_type(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // The last `providers` segment starts the type: `providers/{ns}/{type}/{name}/{child}/{name}…`
    if let Some(p) = segs
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))
        .filter(|p| p + 1 < segs.len())
    {
        let ns = segs[p + 1];
        // Types are at odd offsets after the namespace (names in between); a trailing action
        // (`…/register`) is an extra type-position segment.
        let types: Vec<&str> = segs[p + 2..].iter().step_by(2).copied().collect();
        if types.is_empty() {
            return ns.to_string();
        }
        return format!("{ns}/{}", types.join("/"));
    }
    // No provider: subscriptions/{id}/resourceGroups/{name}/…
    let types: Vec<&str> = segs.iter().step_by(2).copied().collect();
    match types.as_slice() {
        [] => String::new(),
        [_subscriptions] => "Microsoft.Resources/subscriptions".into(),
        [_, rest @ ..] => format!("Microsoft.Resources/{}", rest.join("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "/subscriptions/6f1c2a52-0000-4000-8000-000000000001";

    #[test]
    fn resource_type_table() {
        let cases = [
            (SUB.to_string(), "Microsoft.Resources/subscriptions"),
            (
                format!("{SUB}/resourceGroups/rg"),
                "Microsoft.Resources/resourceGroups",
            ),
            (
                format!("{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"),
                "Microsoft.Network/virtualNetworks",
            ),
            (
                format!(
                    "{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s?api-version=x"
                ),
                "Microsoft.Network/virtualNetworks/subnets",
            ),
            (
                format!("{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/app/config/web"),
                "Microsoft.Web/sites/config",
            ),
            (
                format!("{SUB}/providers/Microsoft.Network/locations/westeurope/operations/abc"),
                "Microsoft.Network/locations/operations",
            ),
            (
                format!(
                    "{SUB}/providers/Microsoft.Features/providers/Microsoft.Network/features/F/register"
                ),
                "Microsoft.Network/features/register",
            ),
            (
                format!("{SUB}/operationresults/xyz"),
                "Microsoft.Resources/operationresults",
            ),
        ];
        for (path, want) in cases {
            assert_eq!(resource_type(&path), want, "{path}");
        }
    }

    #[test]
    fn subscription_of_table() {
        assert_eq!(
            subscription_of(&format!("{SUB}/resourceGroups/rg")),
            Some("6f1c2a52-0000-4000-8000-000000000001")
        );
        assert_eq!(subscription_of("/SUBSCRIPTIONS/abc"), Some("abc"));
        assert_eq!(subscription_of("/providers/Microsoft.Network"), None);
        assert_eq!(subscription_of("/subscriptions/"), None);
    }
}
