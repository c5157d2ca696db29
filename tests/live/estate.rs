//! The wide-open estate a live run creates in its own resource group, with bodies Azure accepts
//! (the emulator holds them to its body rules, and `check-bodies.sh` to Microsoft's models).
//! Everything is the cheapest that fhirlock can secure.

use super::*;

/// The resources of one run, all in resource group `group`.
pub struct Estate {
    pub group: String,
    pub vnet: String,
    pub plan: String,
    pub site: String,
    pub cosmos: String,
    pub gateway: String,
    pub agw_subnet: String,
    pub int_subnet: String,
}

impl Estate {
    /// Site and Cosmos DB account names are DNS names, unique across Azure
    /// (`<site>.azurewebsites.net`, `<account>.documents.azure.com`), so they carry the run's
    /// unique group name.
    pub fn new(t: &Target, group: &str) -> Estate {
        let rg = t.group_id(group);
        let vnet = format!("{rg}/providers/Microsoft.Network/virtualNetworks/vnet-live");
        Estate {
            group: group.into(),
            plan: format!("{rg}/providers/Microsoft.Web/serverfarms/plan-live"),
            site: format!("{rg}/providers/Microsoft.Web/sites/{group}-app"),
            cosmos: format!("{rg}/providers/Microsoft.DocumentDB/databaseAccounts/{group}-db"),
            gateway: format!("{rg}/providers/Microsoft.Network/applicationGateways/agw-live"),
            agw_subnet: format!("{vnet}/subnets/snet-live-agw"),
            int_subnet: format!("{vnet}/subnets/snet-live-int"),
            vnet,
        }
    }

    /// Creates the VNet, plan, site and Cosmos DB account, every door open: the site allows
    /// everyone plus an office range and leaves its SCM site open, HTTPS is optional and FTP on;
    /// Cosmos DB admits public IP rules and Azure services.
    pub fn create(&self, t: &Target, rt: &Runtime) {
        let put = |id: &str, api: &str, body: Value| {
            write(rt, &t.owner, "PUT", id, api, &body, t.timeouts.write);
        };
        let loc = t.location.as_str();
        put(
            &self.vnet,
            NET,
            json!({"location": loc, "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]}}}),
        );
        put(&self.plan, WEB, plan_body(loc, &t.plan_sku));
        put(
            &self.site,
            WEB,
            json!({
                "location": loc,
                "kind": "app,linux",
                "properties": {
                    "serverFarmId": self.plan,
                    "httpsOnly": false,
                    "publicNetworkAccess": "Enabled",
                    "siteConfig": {
                        "linuxFxVersion": "DOTNETCORE|8.0",
                        "ipSecurityRestrictionsDefaultAction": "Allow",
                        "ipSecurityRestrictions": [
                            {"name": "office", "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100, "tag": "Default"}
                        ],
                        "scmIpSecurityRestrictionsDefaultAction": "Allow",
                        "scmIpSecurityRestrictionsUseMain": false,
                        "minTlsVersion": "1.2",
                        "ftpsState": "AllAllowed"
                    }
                }
            }),
        );
        // Serverless (capability `EnableServerless`): billed per request unit consumed, nothing
        // while idle. Learn "Azure Cosmos DB serverless account type" (cosmos-db/serverless.md).
        put(
            &self.cosmos,
            COSMOS,
            json!({
                "location": loc,
                "kind": "GlobalDocumentDB",
                "properties": {
                    "databaseAccountOfferType": "Standard",
                    "locations": [{"locationName": loc, "failoverPriority": 0, "isZoneRedundant": false}],
                    "capabilities": [{"name": "EnableServerless"}],
                    "consistencyPolicy": {"defaultConsistencyLevel": "Session"},
                    "publicNetworkAccess": "Enabled",
                    "isVirtualNetworkFilterEnabled": false,
                    "virtualNetworkRules": [],
                    "ipRules": [{"ipAddressOrRange": "198.51.100.0/24"}, {"ipAddressOrRange": "0.0.0.0"}],
                    "networkAclBypass": "AzureServices"
                }
            }),
        );
    }

    /// The SecuredFhirEndpoint for this estate: `examples/fhir-endpoint.yaml` pointed at it,
    /// the cheapest gateway (Standard_v2, scaling from 0), `deletionPolicy: Delete`.
    pub fn endpoint(&self, t: &Target, ns: &str) -> Value {
        let mut obj = must(fhirlock_testkit::example("fhir-endpoint.yaml"));
        obj["metadata"] = json!({"name": "live", "namespace": ns});
        let s = &mut obj["spec"];
        s["subscriptionId"] = json!(t.subscription);
        s["network"] = json!({
            "virtualNetworkId": self.vnet,
            "gatewaySubnet": {"name": "snet-live-agw", "addressPrefix": "10.20.1.0/26"},
            "integrationSubnet": {"name": "snet-live-int", "addressPrefix": "10.20.2.0/27"},
        });
        s["appService"]["id"] = json!(self.site);
        s["cosmosDb"]["id"] = json!(self.cosmos);
        let g = &mut s["gateway"];
        g["name"] = json!("agw-live");
        g["resourceGroup"] = json!(self.group);
        g["location"] = json!(t.location);
        g["sku"] = json!({"tier": "Standard_v2", "minCapacity": 0, "maxCapacity": 2});
        // Standard_v2 has no WAF (the example's WAF_v2 settings would be refused at admission).
        g.as_object_mut().unwrap().remove("waf");
        g["privateIPAddress"] = json!("10.20.1.10");
        g["hostName"] = json!(HOST);
        g["tls"] = json!({"secretRef": {"name": "live-tls"}});
        s["deletionPolicy"] = json!("Delete");
        obj
    }
}

pub const HOST: &str = "fhir.live.fhirlock.example";

/// An App Service plan for Linux. B1 (Basic) is the cheapest tier with regional VNet
/// integration and access restrictions: "also available in Basic and Standard tier but only
/// from newer App Service deployments … create your app in a Premium v3 App Service plan" to be
/// sure (Learn "Integrate your app with an Azure virtual network", Limitations). So
/// `FHIRLOCK_LIVE_PLAN_SKU=P0v3` is the fallback if a subscription lands on an older one.
pub fn plan_body(location: &str, sku: &str) -> Value {
    let tier = match sku.to_ascii_uppercase().as_str() {
        s if s.starts_with('B') => "Basic",
        s if s.starts_with('S') => "Standard",
        s if s.starts_with('P') && s.ends_with("V2") => "PremiumV2",
        "P0V3" => "Premium0V3",
        s if s.starts_with('P') && s.ends_with("MV3") => "PremiumMV3",
        s if s.starts_with('P') => "PremiumV3",
        other => panic!("FHIRLOCK_LIVE_PLAN_SKU {other}: not a B, S or P SKU"),
    };
    json!({
        "location": location,
        "kind": "linux",
        "sku": {"name": sku, "tier": tier, "capacity": 1},
        "properties": {"reserved": true}
    })
}
