//! `fhirlock scan --subscription S [--resource-group G]`: what a security team runs first, before
//! anyone writes a spec. Lists every App Service site (`WebApps_List` /
//! `WebApps_ListByResourceGroup`, following `nextLink`) and Cosmos DB account
//! (`DatabaseAccounts_List` / `DatabaseAccounts_ListByResourceGroup`) in scope, reads each site's
//! `config/web` (and its private endpoint connections when `publicNetworkAccess` leaves them to
//! decide), reports the back doors the core finds without a spec (`fhirlock_core::scan`), and
//! writes a starter `SecuredFhirEndpoint` for each site that looks like a FHIR server. GETs only,
//! one at a time, inside a share of the subscription's read bucket.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use fhirlock_arm::{ArmClient, ArmError, ErrorClass};
use fhirlock_core::observed::api_version;
use fhirlock_core::posture::Finding;
use fhirlock_core::{Observed, scan};
use serde_json::{Value, json};

use crate::oneshot::{AzureArgs, Output, POSTURE_DOC, sarif_level, sarif_log};
use crate::reconcile::memory::bucket_wait;

#[derive(Args, Debug, Clone)]
pub struct ScanArgs {
    /// The subscription to scan (its GUID).
    #[arg(long)]
    pub subscription: String,
    /// Only this resource group.
    #[arg(long)]
    pub resource_group: Option<String>,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    /// Write a starter SecuredFhirEndpoint (`<name>.yaml`) here for each site that looks like a
    /// FHIR server. Without it, table output prints them.
    #[arg(long)]
    pub starter_specs: Option<PathBuf>,
    /// Share (0–1) of the subscription's ARM read bucket the scan may use; it waits when ARM's
    /// figures say the rest belongs to others.
    #[arg(long, default_value_t = 0.5)]
    pub arm_budget_share: f64,
    #[command(flatten)]
    pub azure: AzureArgs,
}

/// Azure's documented read bucket: 250, refilled at 25 a second (Learn, "Understand how Azure
/// Resource Manager throttles requests"; docs/azure-fidelity.md T1).
const READ_BUCKET: u32 = 250;
const READ_REFILL: f64 = 25.0;
/// Re-sends of one GET that ARM throttled or that failed transiently, after its Retry-After.
const RETRIES: u32 = 5;

/// GETs inside a share of the read bucket, with progress on a terminal.
struct Reader {
    arm: ArmClient,
    subscription: String,
    share: f64,
    /// The largest remaining-reads figure seen: the bucket's size as far as is known.
    capacity: Mutex<u32>,
    progress: bool,
}

impl Reader {
    fn say(&self, what: &str) {
        if self.progress {
            eprint!("\r\x1b[2K{what}");
        }
    }

    /// Waits while ARM's last figure says the read bucket is below the scan's share.
    async fn within_budget(&self) {
        let Some((reads, age)) = self
            .arm
            .budget(&self.subscription)
            .and_then(|b| Some((b.reads?, b.observed_at.elapsed())))
        else {
            return;
        };
        let capacity = {
            let mut c = self.capacity.lock().unwrap_or_else(|p| p.into_inner());
            *c = (*c).max(reads);
            (*c).min(READ_BUCKET)
        };
        if let Some(wait) = bucket_wait(reads, age, capacity, self.share, READ_REFILL) {
            self.say(&format!(
                "waiting {:.1}s for the read budget",
                wait.as_secs_f64()
            ));
            tokio::time::sleep(wait).await;
        }
    }

    /// One GET (a page by its `nextLink` when `next` is given), re-sent after ARM's Retry-After
    /// when throttled or transiently failed.
    async fn get(
        &self,
        id: &str,
        api: &str,
        next: Option<&str>,
    ) -> Result<Option<Value>, ArmError> {
        let mut backoff = Duration::from_secs(1);
        let mut tries = 0;
        loop {
            self.within_budget().await;
            let r = match next {
                Some(link) => self.arm.get_next_link(link).await.map(Some),
                None => self.arm.get(id, api).await,
            };
            match r {
                Err(e)
                    if tries < RETRIES
                        && matches!(e.class, ErrorClass::Throttled | ErrorClass::Transient) =>
                {
                    tries += 1;
                    let wait = e.retry_after.unwrap_or(backoff);
                    self.say(&format!(
                        "{}: {e}; retrying in {:.1}s",
                        e.class.as_str(),
                        wait.as_secs_f64()
                    ));
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                other => return other,
            }
        }
    }

    /// Every item of an `x-ms-pageable` list, following `nextLink` to the end.
    async fn list(&self, path: &str, api: &str) -> Result<Vec<Value>, ArmError> {
        let mut out = Vec::new();
        let mut page = self.get(path, api, None).await?.unwrap_or_default();
        loop {
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            let Some(next) = page["nextLink"]
                .as_str()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
            else {
                return Ok(out);
            };
            self.say(&format!("listing {path}: {} so far", out.len()));
            page = self.get(path, api, Some(&next)).await?.unwrap_or_default();
        }
    }
}

/// One site as scanned.
struct SiteReport {
    id: String,
    findings: Vec<Finding>,
    evidence: Vec<String>,
    cosmos: Option<(String, String)>,
    starter: Option<(String, String)>,
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// `fhirlock scan`: exit 0 without blocking findings, 1 with, 2 on an error (as `audit`).
pub async fn scan(a: &ScanArgs) -> anyhow::Result<i32> {
    if !is_guid(&a.subscription) {
        bail!(
            "--subscription {:?} is not a subscription GUID such as 6f1c2a52-0000-4000-8000-000000000001",
            a.subscription
        );
    }
    let r = Reader {
        arm: a.azure.client()?,
        subscription: a.subscription.to_ascii_lowercase(),
        share: a.arm_budget_share.clamp(0.01, 1.0),
        capacity: Mutex::new(0),
        progress: std::io::stderr().is_terminal(),
    };
    let scope = match &a.resource_group {
        Some(g) => format!("/subscriptions/{}/resourceGroups/{g}", a.subscription),
        None => format!("/subscriptions/{}", a.subscription),
    };
    let arm = |e: ArmError| anyhow::anyhow!("reading Azure: {e}");
    r.say("listing App Service sites");
    let sites = r
        .list(
            &format!("{scope}/providers/Microsoft.Web/sites"),
            api_version::WEB,
        )
        .await
        .map_err(arm)?;
    r.say("listing Cosmos DB accounts");
    let accounts = r
        .list(
            &format!("{scope}/providers/Microsoft.DocumentDB/databaseAccounts"),
            api_version::COSMOS,
        )
        .await
        .map_err(arm)?;
    let mut reports = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        r.say(&format!(
            "site {}/{}: {}",
            i + 1,
            sites.len(),
            str_of(site, "name")
        ));
        reports.push(scan_site(&r, a, site, &accounts).await.map_err(arm)?);
    }
    r.say("");
    let cosmos: Vec<(String, Vec<Finding>)> = accounts
        .iter()
        .map(|c| {
            let id = str_of(c, "id").to_owned();
            let f = scan::cosmos_findings(&id, c);
            (id, f)
        })
        .collect();
    let written = write_starters(a, &reports)?;
    let blocking = reports
        .iter()
        .flat_map(|s| &s.findings)
        .chain(cosmos.iter().flat_map(|c| &c.1))
        .filter(|f| f.is_blocking())
        .count();
    match a.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&as_json(a, &reports, &cosmos, &written, blocking))?
        ),
        Output::Sarif => println!(
            "{}",
            serde_json::to_string_pretty(&sarif(&reports, &cosmos))?
        ),
        Output::Table => print_table(a, &reports, &cosmos, &written, blocking),
    }
    Ok(if blocking > 0 { 1 } else { 0 })
}

/// One site: its `config/web`, its private endpoint connections when they decide whether it is
/// public, its findings and, if it looks like a FHIR server, a starter spec.
async fn scan_site(
    r: &Reader,
    a: &ScanArgs,
    site: &Value,
    accounts: &[Value],
) -> Result<SiteReport, ArmError> {
    let id = str_of(site, "id").to_owned();
    // WebApps_List answers `Site` objects whose `siteConfig` is not filled in, so the settings
    // come from config/web (WebApps_GetConfiguration).
    let config = r
        .get(&format!("{id}/config/web"), api_version::WEB, None)
        .await?;
    let access = site
        .pointer("/properties/publicNetworkAccess")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let endpoints = if access.is_empty() {
        r.get(
            &format!("{id}/privateEndpointConnections"),
            api_version::WEB,
            None,
        )
        .await?
        .map(|l| l["value"].as_array().cloned().unwrap_or_default())
    } else {
        None
    };
    let o = Observed {
        site: Some(site.clone()),
        site_config: config.clone(),
        site_private_endpoints: endpoints,
        ..Observed::default()
    };
    let findings = scan::site_findings(&id, &o);
    let evidence = scan::fhir_evidence(site, config.as_ref());
    let (cosmos, starter) = if evidence.is_empty() {
        (None, None)
    } else {
        let cosmos = scan::guess_cosmos(&id, accounts);
        let s = scan::Starter {
            subscription_id: &a.subscription,
            site_id: &id,
            location: str_of(site, "location"),
            evidence: &evidence,
            cosmos: cosmos.clone(),
        };
        (cosmos, Some((s.name(), s.yaml())))
    };
    Ok(SiteReport {
        id,
        findings,
        evidence,
        cosmos,
        starter,
    })
}

/// Writes the starter specs, one file per FHIR-looking site; returns site ID → path.
fn write_starters(
    a: &ScanArgs,
    reports: &[SiteReport],
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let Some(dir) = &a.starter_specs else {
        return Ok(out);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for s in reports {
        if let Some((name, yaml)) = &s.starter {
            // Two sites of one name in different groups must not overwrite each other.
            let mut path = dir.join(format!("{name}.yaml"));
            let mut n = 2;
            while out.values().any(|p| p == &path) {
                path = dir.join(format!("{name}-{n}.yaml"));
                n += 1;
            }
            std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            out.insert(s.id.clone(), path);
        }
    }
    Ok(out)
}

fn as_json(
    a: &ScanArgs,
    reports: &[SiteReport],
    cosmos: &[(String, Vec<Finding>)],
    written: &BTreeMap<String, PathBuf>,
    blocking: usize,
) -> Value {
    let sites: Vec<Value> = reports
        .iter()
        .map(|s| {
            let fhir = (!s.evidence.is_empty()).then(|| {
                json!({
                    "evidence": s.evidence,
                    "cosmosDbId": s.cosmos.as_ref().map(|c| &c.0),
                    "cosmosDbReason": s.cosmos.as_ref().map(|c| &c.1),
                    "starterSpec": s.starter.as_ref().map(|(_, y)| y),
                    "starterSpecFile": written.get(&s.id),
                })
            });
            json!({"id": s.id, "findings": s.findings, "fhirServer": fhir})
        })
        .collect();
    let accounts: Vec<Value> = cosmos
        .iter()
        .map(|(id, f)| json!({"id": id, "findings": f}))
        .collect();
    json!({
        "subscriptionId": a.subscription,
        "resourceGroup": a.resource_group,
        "sites": sites,
        "cosmosDbAccounts": accounts,
        "blocking": blocking,
    })
}

/// SARIF 2.1.0 (GitHub and Azure DevOps code scanning): one rule per catalogue code a scan
/// checks, one result per finding, located by its ARM ID as a logical location.
fn sarif(reports: &[SiteReport], cosmos: &[(String, Vec<Finding>)]) -> Value {
    let rules: Vec<Value> = scan::CODES
        .iter()
        .map(|c| {
            json!({
                "id": c.as_str(), "name": c.as_str(),
                "shortDescription": {"text": format!("fhirlock posture finding {c}")},
                "helpUri": POSTURE_DOC,
            })
        })
        .collect();
    let results: Vec<Value> = reports
        .iter()
        .flat_map(|s| &s.findings)
        .chain(cosmos.iter().flat_map(|c| &c.1))
        .map(|f| {
            json!({
                "ruleId": f.code.as_str(),
                "ruleIndex": scan::CODES.iter().position(|c| *c == f.code),
                "level": sarif_level(f.severity),
                "message": {"text": f.message},
                "locations": [{"logicalLocations": [{"fullyQualifiedName": f.resource_id, "kind": "resource"}]}],
                "properties": {"severity": f.severity.as_str()},
            })
        })
        .collect();
    sarif_log(rules, results)
}

fn print_table(
    a: &ScanArgs,
    reports: &[SiteReport],
    cosmos: &[(String, Vec<Finding>)],
    written: &BTreeMap<String, PathBuf>,
    blocking: usize,
) {
    let all: Vec<&Finding> = reports
        .iter()
        .flat_map(|s| &s.findings)
        .chain(cosmos.iter().flat_map(|c| &c.1))
        .collect();
    println!(
        "{} site(s), {} Cosmos DB account(s) in {}",
        reports.len(),
        cosmos.len(),
        a.resource_group
            .as_deref()
            .map(|g| format!("resource group {g}"))
            .unwrap_or_else(|| format!("subscription {}", a.subscription))
    );
    if !all.is_empty() {
        println!(
            "{:<9} {:<26} {:<30} MESSAGE",
            "SEVERITY", "CODE", "RESOURCE"
        );
        for f in &all {
            let name = f.resource_id.rsplit('/').next().unwrap_or_default();
            println!(
                "{:<9} {:<26} {:<30} {}",
                f.severity.as_str(),
                f.code.as_str(),
                name,
                f.message
            );
        }
    }
    for s in reports.iter().filter(|s| !s.evidence.is_empty()) {
        println!(
            "\nlooks like a FHIR server: {} ({})",
            s.id,
            s.evidence.join("; ")
        );
        match &s.cosmos {
            Some((c, why)) => println!("  Cosmos DB: {c} ({why})"),
            None => {
                println!("  Cosmos DB: not determinable read-only; the starter spec has a TODO")
            }
        }
        match (written.get(&s.id), &s.starter) {
            (Some(p), _) => println!("  starter spec: {}", p.display()),
            (None, Some((_, yaml))) => println!("---\n{yaml}"),
            (None, None) => {}
        }
    }
    println!("\n{} finding(s), {} blocking", all.len(), blocking);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_must_be_a_guid() {
        assert!(is_guid("6f1c2a52-0000-4000-8000-000000000001"));
        for bad in [
            "",
            "6f1c2a52",
            "6f1c2a52-0000-4000-8000-00000000000g",
            "my-sub",
        ] {
            assert!(!is_guid(bad), "{bad}");
        }
    }

    /// Every starter spec passes the CRD's schema and CEL rules as it is, whatever the site.
    #[test]
    fn starter_specs_are_admitted_as_they_are() {
        let sub = "6f1c2a52-0000-4000-8000-000000000001";
        let evidence = vec!["tag FhirServerSolution=FhirServerCosmosDB\nsecond line".to_owned()];
        let cases = [
            ("fhir", "fhir-server", "UK South", None),
            (
                "RG.With(Odd)_Chars",
                "FHIR-Prod-01",
                "uksouth",
                Some("fhir-prod-01"),
            ),
            ("g", &"a".repeat(59) as &str, "westeurope", None),
            ("g", "x-", "", None),
        ];
        for (group, name, location, cosmos) in cases {
            let site_id = format!(
                "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Web/sites/{name}"
            );
            let s = scan::Starter {
                subscription_id: sub,
                site_id: &site_id,
                location,
                evidence: &evidence,
                cosmos: cosmos.map(|c| {
                    (
                        format!("/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.DocumentDB/databaseAccounts/{c}"),
                        "why".to_owned(),
                    )
                }),
            };
            let yaml = s.yaml();
            let value: Value =
                serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            let errors = fhirlock_api::admission::validate(&value, None);
            assert!(errors.is_empty(), "{errors:?}\n{yaml}");
            assert_eq!(value["spec"]["mode"], "Audit");
            assert_eq!(value["spec"]["appService"]["id"], site_id.as_str());
            assert_eq!(value["metadata"]["name"], s.name().as_str());
            assert!(yaml.matches("TODO").count() >= 6, "{yaml}");
        }
    }
}
