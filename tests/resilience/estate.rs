//! The estate a scenario runs on: several endpoints, each with its own site, Cosmos account,
//! gateway and subnets, in one emulator.

use super::*;

/// Endpoint `i`: its own site, plan and Cosmos account (resource group `fhir`), its own gateway,
/// and its own pair of subnets in the shared VNet.
#[derive(Clone, Copy)]
pub struct Ep(pub usize);

impl Ep {
    pub fn name(self) -> String {
        format!("records-{}", self.0)
    }
    pub fn site(self) -> String {
        format!(
            "{}/providers/Microsoft.Web/sites/fhir-server-{}",
            rg("fhir"),
            self.0
        )
    }
    pub fn cosmos(self) -> String {
        format!(
            "{}/providers/Microsoft.DocumentDB/databaseAccounts/fhir-cosmos-{}",
            rg("fhir"),
            self.0
        )
    }
    pub fn gateway_name(self) -> String {
        format!("agw-fhir-{}", self.0)
    }
    pub fn gateway(self) -> String {
        format!(
            "{}/providers/Microsoft.Network/applicationGateways/{}",
            rg("fhir"),
            self.gateway_name()
        )
    }
    pub fn agw_subnet(self) -> String {
        format!("snet-agw-{}", self.0)
    }
    pub fn int_subnet(self) -> String {
        format!("snet-int-{}", self.0)
    }
    pub fn subnet_id(self, name: &str) -> String {
        format!("{}/subnets/{name}", vnet())
    }
    pub fn host(self) -> String {
        format!("fhir{}.trust.nhs.uk", self.0)
    }
    pub fn manifest(self, ns: &str, policy: &str) -> Value {
        let mut obj = fhirlock_testkit::example("fhir-endpoint.yaml").unwrap();
        let i = self.0;
        obj["metadata"]["name"] = json!(self.name());
        obj["metadata"]["namespace"] = json!(ns);
        let s = &mut obj["spec"];
        s["network"]["gatewaySubnet"] =
            json!({"name": self.agw_subnet(), "addressPrefix": format!("10.20.{}.0/26", 10 + i)});
        s["network"]["integrationSubnet"] =
            json!({"name": self.int_subnet(), "addressPrefix": format!("10.20.{}.0/27", 40 + i)});
        s["appService"]["id"] = json!(self.site());
        s["cosmosDb"]["id"] = json!(self.cosmos());
        s["gateway"]["name"] = json!(self.gateway_name());
        s["gateway"]["privateIPAddress"] = json!(format!("10.20.{}.10", 10 + i));
        s["gateway"]["hostName"] = json!(self.host());
        s["gateway"]["tls"]["secretRef"]["name"] = json!(format!("tls-{i}"));
        s["deletionPolicy"] = json!(policy);
        obj
    }
}

/// `examples/arm-emulator-estate.yaml` with the site, plan and Cosmos account repeated per
/// endpoint (renamed `-0`, `-1`, …).
pub fn estate_config(n: usize, dir: &Path) -> PathBuf {
    let mut cfg = fhirlock_testkit::example("arm-emulator-estate.yaml").unwrap();
    let seeds = cfg["seed"].as_array().unwrap().clone();
    let mut out = Vec::new();
    for s in &seeds {
        let id = s["id"].as_str().unwrap();
        let per_endpoint = ["/fhir-plan", "/fhir-server", "/fhir-cosmos"]
            .iter()
            .any(|t| id.ends_with(t));
        if !per_endpoint {
            out.push(s.clone());
            continue;
        }
        for i in 0..n {
            let mut s = s.clone();
            s["id"] = json!(format!("{id}-{i}"));
            if let Some(farm) = s["body"]["properties"]["serverFarmId"].as_str() {
                s["body"]["properties"]["serverFarmId"] = json!(format!("{farm}-{i}"));
            }
            out.push(s);
        }
    }
    cfg["seed"] = Value::Array(out);
    let path = dir.join(format!("estate-{n}.yaml"));
    std::fs::write(&path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    path
}
