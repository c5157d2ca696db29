//! `fhirlock scan`: the back doors of every App Service site and Cosmos DB account in scope before
//! anyone has written a spec, which sites look like a FHIR server, and a starter
//! `SecuredFhirEndpoint` for each. Pure: the binary lists and reads, this judges.
//!
//! Without a spec there is no gateway subnet, integration subnet or peer to admit, so every allow
//! rule is a way in, any VNet integration counts as integrated, and no Cosmos DB VNet rule can be
//! called foreign. Findings that need a spec (the gateway's, the subnets', `HostNameNotBound`,
//! `CosmosForeignVnetRule`) are not reported.

use serde_json::Value;

use crate::id;
use crate::model::IpRestriction;
use crate::observed::Observed;
use crate::posture::{self, Finding, FindingCode};

/// The catalogue codes a scan checks, in catalogue order.
pub const CODES: &[FindingCode] = &[
    FindingCode::SiteAllowsOtherSources,
    FindingCode::SiteDefaultAllow,
    FindingCode::ScmSitePublic,
    FindingCode::SiteNotVnetIntegrated,
    FindingCode::HttpsOnlyDisabled,
    FindingCode::MinTlsBelow12,
    FindingCode::FtpEnabled,
    FindingCode::CosmosVnetFilterOff,
    FindingCode::CosmosIpRule,
    FindingCode::CosmosAzureServicesBypass,
    FindingCode::CosmosKeyAuthEnabled,
];

/// The findings about who may pass a public endpoint's access restrictions or firewall; they do
/// not apply to a resource closed to public traffic.
const PUBLIC_ENDPOINT_CODES: &[FindingCode] = &[
    FindingCode::SiteAllowsOtherSources,
    FindingCode::SiteDefaultAllow,
    FindingCode::ScmSitePublic,
    FindingCode::CosmosVnetFilterOff,
    FindingCode::CosmosIpRule,
    FindingCode::CosmosAzureServicesBypass,
];

/// The back doors of one site, from its body (as listed) and its `config/web`.
pub fn site_findings(site_id: &str, o: &Observed) -> Vec<Finding> {
    let mut out = Vec::new();
    let nothing_admitted = |_: &IpRestriction| false;
    if let Some(cfg) = o.site_config() {
        posture::site_config_checks(site_id, &cfg.properties, "", &nothing_admitted, &mut out);
    }
    if let Some(site) = o.site() {
        let integrated = site
            .properties
            .virtual_network_subnet_id
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty());
        posture::site_checks(site_id, &site, integrated, &mut out);
    }
    if !posture::site_public(o) {
        out.retain(|f| !PUBLIC_ENDPOINT_CODES.contains(&f.code));
    }
    out
}

/// The back doors of one Cosmos DB account, from its body (as listed).
pub fn cosmos_findings(cosmos_id: &str, account: &Value) -> Vec<Finding> {
    let mut out = Vec::new();
    let o = Observed {
        cosmos: Some(account.clone()),
        ..Observed::default()
    };
    let Some(c) = o.cosmos() else {
        return out;
    };
    posture::cosmos_checks(cosmos_id, &c.properties, &|_: &str| true, &mut out);
    // A closed account (`Disabled`, `SecuredByPerimeter`) has no public firewall to pass.
    if !crate::plan::cosmos_public(&c.properties) {
        out.retain(|f| !PUBLIC_ENDPOINT_CODES.contains(&f.code));
    }
    out
}

/// The tag Microsoft's FHIR server templates put on the site, its plan and its Cosmos DB account
/// (microsoft/fhir-server, `samples/templates/default-azuredeploy.json` and
/// `default-azuredeploy-docker.json`: `"FhirServerSolution": "[parameters('solutionType')]"`,
/// `FhirServerCosmosDB` or `FhirServerSqlServer`).
pub const FHIR_SERVER_TAG: &str = "FhirServerSolution";

/// Why a site looks like a FHIR server, from what an ARM GET shows without calling the app or
/// reading its app settings (`config/appsettings/list` is a POST that returns secrets). Empty
/// when nothing does. Evidence, strongest first:
/// - the [`FHIR_SERVER_TAG`] tag;
/// - `config/web` as the Docker template sets it: `linuxFxVersion`
///   `DOCKER|healthplatformregistry.azurecr.io/<version>_fhir-server:<tag>` or `appCommandLine`
///   `azure-fhir-api`; any `linuxFxVersion`/`windowsFxVersion` naming FHIR;
/// - "fhir" in the site's name, or in a tag name or value.
pub fn fhir_evidence(site: &Value, config: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    let fhir = |s: &str| s.to_ascii_lowercase().contains("fhir");
    let tags = site.get("tags").and_then(Value::as_object);
    if let Some(v) = tags.and_then(|t| {
        t.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(FHIR_SERVER_TAG))
            .map(|(_, v)| v)
    }) {
        out.push(format!(
            "tag {FHIR_SERVER_TAG}={} (Microsoft's FHIR server templates)",
            v.as_str().unwrap_or_default()
        ));
    }
    let props = config.and_then(|c| c.get("properties"));
    let field = |k: &str| props.and_then(|p| p.get(k)).and_then(Value::as_str);
    for k in ["linuxFxVersion", "windowsFxVersion"] {
        if let Some(v) = field(k).filter(|v| fhir(v)) {
            out.push(format!("{k} {v}"));
        }
    }
    if field("appCommandLine").is_some_and(|c| c.trim() == "azure-fhir-api") {
        out.push("appCommandLine azure-fhir-api (the FHIR server's container)".into());
    }
    if let Some(name) = site.get("name").and_then(Value::as_str).filter(|n| fhir(n)) {
        out.push(format!("the name {name}"));
    }
    for (k, v) in tags.into_iter().flatten() {
        let value = v.as_str().unwrap_or_default();
        if !k.eq_ignore_ascii_case(FHIR_SERVER_TAG) && (fhir(k) || fhir(value)) {
            out.push(format!("tag {k}={value}"));
        }
    }
    out
}

/// The Cosmos DB account a site most likely uses, and why; `None` when that cannot be told
/// read-only. `accounts` are the listed accounts' bodies. In order: the account in the site's
/// resource group with the site's name (the templates give both `serviceName`); the only one
/// there with the [`FHIR_SERVER_TAG`] tag; the only one there at all.
pub fn guess_cosmos(site_id: &str, accounts: &[Value]) -> Option<(String, String)> {
    let group = |i: &str| group_of(i).map(|g| g.to_ascii_lowercase());
    let site_group = group(site_id)?;
    let site_name = name_of(site_id);
    let here: Vec<(&str, &Value)> = accounts
        .iter()
        .filter_map(|a| Some((a.get("id")?.as_str()?, a)))
        .filter(|(i, _)| group(i).as_deref() == Some(site_group.as_str()))
        .collect();
    if let Some((i, _)) = here
        .iter()
        .find(|(i, _)| name_of(i).eq_ignore_ascii_case(site_name))
    {
        return Some((
            i.to_string(),
            "it has the site's name, in the site's resource group".into(),
        ));
    }
    let tagged: Vec<&str> = here
        .iter()
        .filter(|(_, a)| {
            a.get("tags")
                .and_then(Value::as_object)
                .is_some_and(|t| t.keys().any(|k| k.eq_ignore_ascii_case(FHIR_SERVER_TAG)))
        })
        .map(|(i, _)| *i)
        .collect();
    if let [only] = tagged[..] {
        return Some((
            only.to_owned(),
            format!("the only account in the site's resource group tagged {FHIR_SERVER_TAG}"),
        ));
    }
    if let [(only, _)] = here[..] {
        return Some((
            only.to_owned(),
            "the only account in the site's resource group".into(),
        ));
    }
    None
}

/// Placeholders of a starter spec: valid for the CRD (so `kubectl apply` takes the file as it
/// is), and plainly not real. 10.255.0.0/24 is private space (RFC 1918) a person must replace
/// with the HSCN addresses NHS England allocates; `.invalid` is reserved (RFC 2606).
pub const PLACEHOLDER_GATEWAY_PREFIX: &str = "10.255.0.0/26";
pub const PLACEHOLDER_INTEGRATION_PREFIX: &str = "10.255.0.64/26";
pub const PLACEHOLDER_GATEWAY_IP: &str = "10.255.0.10";

/// A starter `SecuredFhirEndpoint` for one FHIR-looking site.
pub struct Starter<'a> {
    pub subscription_id: &'a str,
    pub site_id: &'a str,
    /// The site's region as ARM gives it (`uksouth` or `UK South`).
    pub location: &'a str,
    pub evidence: &'a [String],
    /// The Cosmos DB account and why, from [`guess_cosmos`].
    pub cosmos: Option<(String, String)>,
}

impl Starter<'_> {
    /// `metadata.name`: the site's name as a lowercase DNS subdomain.
    pub fn name(&self) -> String {
        let n: String = name_of(self.site_id)
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let n = n.trim_matches('-');
        if n.is_empty() {
            "fhir".into()
        } else {
            n.to_owned()
        }
    }

    /// The YAML, with a `# TODO` on every line a person must fill in, and `mode: Audit`, so that
    /// applying it as it is never writes to Azure.
    pub fn yaml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let name = self.name();
        let sub = self.subscription_id;
        let group = group_of(self.site_id).unwrap_or_else(|| "TODO-resource-group".into());
        let location: String = self
            .location
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let location = if location.is_empty() {
            "uksouth".into()
        } else {
            location
        };
        let gateway: String = format!("agw-{name}").chars().take(80).collect();
        let cosmos = match &self.cosmos {
            Some((cid, why)) => format!("    id: {}  # {}\n", q(cid), one_line(why)),
            None => format!(
                "    # TODO: the Cosmos DB account this FHIR server uses; it could not be told read-only.\n    id: {}\n",
                q(&format!(
                    "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.DocumentDB/databaseAccounts/todo-cosmos-account"
                ))
            ),
        };
        let evidence: String = self
            .evidence
            .iter()
            .map(|e| format!("#   - {}\n", one_line(e)))
            .collect();
        format!(
            "# A starter SecuredFhirEndpoint written by `fhirlock scan` for {site}.\n\
             # It looks like a FHIR server because of:\n{evidence}\
             # Fill in every TODO, check it with `fhirlock plan -f <file>`, then set mode: Enforce.\n\
             apiVersion: fhirlock.io/v1alpha1\n\
             kind: SecuredFhirEndpoint\n\
             metadata:\n  name: {name}\n\
             spec:\n  subscriptionId: {sub_q}\n  network:\n\
             \x20   # TODO: the HSCN-connected VNet the gateway goes into.\n\
             \x20   virtualNetworkId: {vnet}\n\
             \x20   gatewaySubnet:\n      name: snet-{name_short}-agw\n\
             \x20     addressPrefix: {gw_prefix}  # TODO: a free /26 in that VNet (HSCN addressing)\n\
             \x20   integrationSubnet:\n      name: snet-{name_short}-int\n\
             \x20     addressPrefix: {int_prefix}  # TODO: a free /26 (at least /28) in that VNet\n\
             \x20 appService:\n    id: {site_q}\n\
             \x20 cosmosDb:\n{cosmos}\
             \x20 gateway:\n    name: {gateway_q}\n    resourceGroup: {group_q}\n    location: {location_q}\n\
             \x20   privateIPAddress: {gw_ip}  # TODO: an address in the gateway subnet (not its first four)\n\
             \x20   hostName: {host_q}  # TODO: the FHIR API's name on HSCN\n\
             \x20   tls:\n      secretRef:\n        name: {secret_q}  # TODO: a kubernetes.io/tls Secret with its certificate\n\
             \x20 # Audit only reports; Enforce makes the changes once the TODOs are filled in.\n\
             \x20 mode: Audit\n\
             \x20 deletionPolicy: Retain\n",
            site = self.site_id,
            sub_q = q(sub),
            vnet = q(&format!(
                "/subscriptions/{sub}/resourceGroups/TODO-network-rg/providers/Microsoft.Network/virtualNetworks/TODO-hscn-vnet"
            )),
            name_short = name
                .chars()
                .take(60)
                .collect::<String>()
                .trim_end_matches('-'),
            gw_prefix = q(PLACEHOLDER_GATEWAY_PREFIX),
            int_prefix = q(PLACEHOLDER_INTEGRATION_PREFIX),
            site_q = q(self.site_id),
            gateway_q = q(gateway.trim_end_matches(['-', '.'])),
            group_q = q(&group),
            location_q = q(&location),
            gw_ip = q(PLACEHOLDER_GATEWAY_IP),
            host_q = q(&format!(
                "{}.todo.invalid",
                name.chars()
                    .take(63)
                    .collect::<String>()
                    .trim_end_matches('-')
            )),
            secret_q = q(&format!("{name}-tls")),
        )
    }
}

fn group_of(resource_id: &str) -> Option<String> {
    id::ResourceId::parse(resource_id).map(|r| r.resource_group)
}

fn name_of(resource_id: &str) -> &str {
    resource_id
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// A comment stays one line whatever ARM put in a tag.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUB: &str = "6f1c2a52-0000-4000-8000-000000000001";

    fn site_id(rg: &str, name: &str) -> String {
        format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Web/sites/{name}")
    }
    fn cosmos_id(rg: &str, name: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"
        )
    }

    fn codes(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.code.as_str()).collect()
    }

    fn observed(site: Value, config: Value, endpoints: Option<Vec<Value>>) -> Observed {
        Observed {
            site: Some(site),
            site_config: Some(json!({"properties": config})),
            site_private_endpoints: endpoints,
            ..Observed::default()
        }
    }

    #[test]
    fn every_code_a_scan_reports_is_in_the_catalogue_in_order() {
        let mut last = 0;
        for c in CODES {
            let at = FindingCode::ALL.iter().position(|a| a == c).unwrap();
            assert!(at >= last, "{c} out of catalogue order");
            last = at;
        }
        for c in PUBLIC_ENDPOINT_CODES {
            assert!(CODES.contains(c));
        }
    }

    #[test]
    fn site_findings_without_a_spec() {
        let id = site_id("fhir", "fhir-server");
        let open = json!({
            "ipSecurityRestrictionsDefaultAction": "Allow",
            "ipSecurityRestrictions": [{"name": "office", "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100}],
            "scmIpSecurityRestrictionsDefaultAction": "Allow", "scmIpSecurityRestrictionsUseMain": false,
            "minTlsVersion": "1.0", "ftpsState": "AllAllowed"
        });
        let closed = json!({
            "ipSecurityRestrictionsDefaultAction": "Deny",
            "ipSecurityRestrictions": [{"name": "agw", "vnetSubnetResourceId": "/subscriptions/x/resourceGroups/n/providers/Microsoft.Network/virtualNetworks/v/subnets/s", "action": "Allow", "priority": 100}],
            "scmIpSecurityRestrictionsUseMain": true, "minTlsVersion": "1.2", "ftpsState": "Disabled"
        });
        let pe = json!({"id": "/x/privateEndpointConnections/pe", "properties": {"privateLinkServiceConnectionState": {"status": "Approved"}}});
        // (site properties, config/web, private endpoint connections, codes)
        type Case = (Value, Value, Option<Vec<Value>>, Vec<&'static str>);
        let table: Vec<Case> = vec![
            (
                json!({"httpsOnly": false, "publicNetworkAccess": "Enabled"}),
                open.clone(),
                None,
                vec![
                    "SiteAllowsOtherSources",
                    "SiteDefaultAllow",
                    "ScmSitePublic",
                    "MinTlsBelow12",
                    "FtpEnabled",
                    "HttpsOnlyDisabled",
                    "SiteNotVnetIntegrated",
                ],
            ),
            // Closed to public traffic: its access restrictions let nobody in.
            (
                json!({"httpsOnly": true, "publicNetworkAccess": "Disabled", "virtualNetworkSubnetId": "/s/int"}),
                open.clone(),
                None,
                vec!["MinTlsBelow12", "FtpEnabled"],
            ),
            // Unset with a private endpoint is closed too; without one, open.
            (
                json!({"httpsOnly": true}),
                open.clone(),
                Some(vec![pe.clone()]),
                vec!["MinTlsBelow12", "FtpEnabled", "SiteNotVnetIntegrated"],
            ),
            (
                json!({"httpsOnly": true}),
                open.clone(),
                Some(vec![]),
                vec![
                    "SiteAllowsOtherSources",
                    "SiteDefaultAllow",
                    "ScmSitePublic",
                    "MinTlsBelow12",
                    "FtpEnabled",
                    "SiteNotVnetIntegrated",
                ],
            ),
            // Without a spec a subnet rule is a way in like any other.
            (
                json!({"httpsOnly": true, "publicNetworkAccess": "Enabled", "virtualNetworkSubnetId": "/s/int"}),
                closed.clone(),
                None,
                vec!["SiteAllowsOtherSources"],
            ),
        ];
        for (site, config, pes, want) in table {
            let got = site_findings(&id, &observed(json!({"properties": site}), config, pes));
            assert_eq!(codes(&got), want);
            assert!(
                got.iter()
                    .all(|f| f.resource_id == id && CODES.contains(&f.code))
            );
        }
    }

    #[test]
    fn cosmos_findings_without_a_spec() {
        let id = cosmos_id("fhir", "fhir-cosmos");
        let table = [
            (
                json!({"publicNetworkAccess": "Enabled", "isVirtualNetworkFilterEnabled": false, "ipRules": [{"ipAddressOrRange": "198.51.100.0/24"}], "networkAclBypass": "AzureServices", "disableLocalAuth": false}),
                vec![
                    "CosmosVnetFilterOff",
                    "CosmosIpRule",
                    "CosmosAzureServicesBypass",
                    "CosmosKeyAuthEnabled",
                ],
            ),
            // A VNet rule is not foreign without a spec to say which subnet is right.
            (
                json!({"publicNetworkAccess": "Enabled", "isVirtualNetworkFilterEnabled": true, "virtualNetworkRules": [{"id": "/s/other"}], "disableLocalAuth": true}),
                vec![],
            ),
            (
                json!({"publicNetworkAccess": "Disabled", "isVirtualNetworkFilterEnabled": false, "ipRules": [{"ipAddressOrRange": "198.51.100.0/24"}]}),
                vec!["CosmosKeyAuthEnabled"],
            ),
        ];
        for (props, want) in table {
            let got = cosmos_findings(&id, &json!({"id": id, "properties": props}));
            assert_eq!(codes(&got), want);
        }
    }

    #[test]
    fn what_makes_a_site_look_like_a_fhir_server() {
        let table = [
            (
                json!({"name": "intranet-wiki"}),
                json!({"linuxFxVersion": "NODE|20-lts"}),
                0,
            ),
            (
                json!({"name": "fhir-server"}),
                json!({"linuxFxVersion": "DOTNETCORE|8.0"}),
                1,
            ),
            (
                json!({"name": "api-prod", "tags": {"FhirServerSolution": "FhirServerCosmosDB"}}),
                json!({}),
                1,
            ),
            (
                json!({"name": "api-prod"}),
                json!({"linuxFxVersion": "DOCKER|healthplatformregistry.azurecr.io/r4_fhir-server:release", "appCommandLine": "azure-fhir-api"}),
                2,
            ),
            (
                json!({"name": "records", "tags": {"workload": "FHIR R4"}}),
                json!({}),
                1,
            ),
        ];
        for (site, config, n) in table {
            let e = fhir_evidence(&site, Some(&json!({"properties": config})));
            assert_eq!(e.len(), n, "{site} {config}: {e:?}");
        }
        assert!(
            fhir_evidence(
                &json!({"name": "api", "tags": {"FhirServerSolution": "x"}}),
                None
            )[0]
            .starts_with("tag FhirServerSolution=x")
        );
    }

    #[test]
    fn the_cosmos_account_a_site_uses_when_read_only_can_tell() {
        let site = site_id("fhir", "fhirsrv");
        let acct = |rg: &str, n: &str, tagged: bool| {
            let mut a = json!({"id": cosmos_id(rg, n)});
            if tagged {
                a["tags"] = json!({"FhirServerSolution": "FhirServerCosmosDB"});
            }
            a
        };
        let table = [
            (
                vec![acct("fhir", "other", false), acct("FHIR", "fhirsrv", false)],
                Some("fhirsrv"),
            ),
            (
                vec![acct("fhir", "a", false), acct("fhir", "b", true)],
                Some("b"),
            ),
            (
                vec![acct("fhir", "a", false), acct("other", "b", false)],
                Some("a"),
            ),
            (
                vec![acct("fhir", "a", false), acct("fhir", "b", false)],
                None,
            ),
            (vec![acct("other", "fhirsrv", false)], None),
            (vec![], None),
        ];
        for (accounts, want) in table {
            let got = guess_cosmos(&site, &accounts).map(|(i, _)| name_of(&i).to_owned());
            assert_eq!(got.as_deref(), want, "{accounts:?}");
        }
    }
}
