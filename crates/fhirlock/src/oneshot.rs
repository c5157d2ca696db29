//! `fhirlock audit | plan | apply -f endpoint.yaml`: the controller's stages (observe, decide,
//! apply), run once from a shell or a CI job, without a cluster. Resolve reads the manifest and
//! the flags instead of the cluster; report prints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use fhirlock_api::{SecuredFhirEndpoint, SecuredFhirEndpointStatus};
use fhirlock_arm::{ArmClient, ArmConfig, ErrorClass, OperationStatus};
use fhirlock_core::plan::Clock;
use fhirlock_core::posture::{Finding, Severity};
use fhirlock_core::status::Assessment;
use fhirlock_core::{Certificate, Desired, plan, posture, preflight};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::reconcile::apply::{self as stage_apply, Applied};
use crate::reconcile::decide::{self, Look};
use crate::reconcile::observe;

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The SecuredFhirEndpoint manifest.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// PEM certificate chain for spec.gateway.tls.secretRef (offline stand-in for the Secret's tls.crt).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for spec.gateway.tls.secretRef (the Secret's tls.key).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub azure: AzureArgs,
    #[command(flatten)]
    pub cosmos: CosmosArgs,
}

/// How long fhirlock gives a Cosmos DB firewall change to reach the data plane before the App
/// Service joins the integration subnet. Microsoft documents up to 15 minutes ("Configure IP
/// firewall in Azure Cosmos DB"), and ARM reports no moment at which a change has taken effect.
#[derive(Args, Debug, Clone)]
pub struct CosmosArgs {
    /// Seconds to wait after Cosmos DB is seen admitting the integration subnet before the site
    /// joins it. Below 900 the app may lose its database for a while; the emulator, whose time
    /// runs faster, is the reason to lower it.
    #[arg(
        long = "cosmos-firewall-propagation-seconds",
        env = "FHIRLOCK_COSMOS_FIREWALL_PROPAGATION_SECONDS",
        default_value_t = fhirlock_core::plan::FIREWALL_PROPAGATION.as_secs_f64()
    )]
    pub seconds: f64,
}

impl CosmosArgs {
    pub fn propagation(&self) -> Duration {
        Duration::try_from_secs_f64(self.seconds.max(0.0))
            .unwrap_or(fhirlock_core::plan::FIREWALL_PROPAGATION)
    }
}

/// Where Azure is and who fhirlock is there. Each flag falls back to the standard variable.
#[derive(Args, Debug, Clone)]
pub struct AzureArgs {
    /// ARM endpoint (sovereign clouds, or an emulator).
    #[arg(long, env = "FHIRLOCK_ARM_ENDPOINT")]
    pub arm_endpoint: Option<String>,
    /// Microsoft Entra authority host.
    #[arg(long, env = "AZURE_AUTHORITY_HOST")]
    pub authority_host: Option<String>,
    /// Extra PEM CA bundle to trust (TLS inspection proxies, the emulator).
    #[arg(long, env = "FHIRLOCK_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// Who fhirlock is in Azure. `auto`: a service principal or workload identity when the
    /// AZURE_* variables name one, else the Azure CLI's login (`az login`).
    #[arg(long, value_enum, env = "FHIRLOCK_ARM_CREDENTIAL", default_value_t = Credential::Auto)]
    pub credential: Credential,
}

/// `--credential`: the values of `FHIRLOCK_ARM_CREDENTIAL`, and `auto`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    Auto,
    AzureCli,
    ClientSecret,
    WorkloadIdentity,
    ManagedIdentity,
}

impl Credential {
    /// The `FHIRLOCK_ARM_CREDENTIAL` value for [`ArmConfig::from_lookup`]. `auto` keeps its rules
    /// (a secret or a token file in the environment; both is an error) and, where the
    /// environment names no credential at all, takes the person's Azure CLI login.
    fn kind(self, get: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
        Some(match self {
            Credential::Auto => {
                let set = |k| get(k).is_some();
                let none = !set("AZURE_CLIENT_SECRET") && !set("AZURE_FEDERATED_TOKEN_FILE");
                return none.then_some("azure-cli");
            }
            Credential::AzureCli => "azure-cli",
            Credential::ClientSecret => "client-secret",
            Credential::WorkloadIdentity => "workload-identity",
            Credential::ManagedIdentity => "managed-identity",
        })
    }
}

impl AzureArgs {
    pub fn client(&self) -> anyhow::Result<ArmClient> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let credential = self.credential.kind(env);
        let lookup = |k: &str| -> Option<String> {
            match k {
                "FHIRLOCK_ARM_ENDPOINT" => self.arm_endpoint.clone(),
                "AZURE_AUTHORITY_HOST" => self.authority_host.clone(),
                "FHIRLOCK_CA_BUNDLE" => self.ca_bundle.as_ref().map(|p| p.display().to_string()),
                // Resolved from the flag (which clap also fills from this variable).
                "FHIRLOCK_ARM_CREDENTIAL" => return credential.map(str::to_owned),
                _ => None,
            }
            .or_else(|| env(k))
        };
        ArmClient::new(ArmConfig::from_lookup(lookup)?)
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Sarif,
}

/// A manifest read and admitted exactly as the apiserver would admit it.
pub fn load(file: &Path) -> anyhow::Result<SecuredFhirEndpoint> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let value: Value =
        serde_yaml::from_str(&text).with_context(|| format!("{} is not YAML", file.display()))?;
    let errors = fhirlock_api::admission::validate(&value, None);
    if !errors.is_empty() {
        bail!(
            "{} would be rejected by the apiserver:\n  {}",
            file.display(),
            errors.join("\n  ")
        );
    }
    serde_json::from_value(value)
        .with_context(|| format!("{} is not a SecuredFhirEndpoint", file.display()))
}

pub fn desired(t: &Target, sfe: &SecuredFhirEndpoint) -> anyhow::Result<Desired> {
    let tls = &sfe.spec.gateway.tls;
    let cert = match (&tls.key_vault_secret_id, &t.tls_cert, &t.tls_key) {
        (Some(id), _, _) => Certificate::KeyVault {
            secret_id: id.clone(),
            // load() admitted the manifest, and admission requires the identity with the secret.
            identity_id: tls
                .key_vault_identity_id
                .clone()
                .context("spec.gateway.tls.keyVaultIdentityId is required with keyVaultSecretId")?,
        },
        (None, Some(c), Some(k)) => {
            let host = &sfe.spec.gateway.host_name;
            let (cert, expiry) = crate::tls::listener(
                host,
                &std::fs::read(c)?,
                &std::fs::read(k)?,
                crate::tls::unix_now(),
            )
            .map_err(|s| anyhow::anyhow!("{}: {}: {}", c.display(), s.reason, s.message))?;
            if let Some(w) = expiry.warning(&c.display().to_string()) {
                eprintln!("warning: CertificateExpiresSoon: {w}");
            }
            cert
        }
        _ => Certificate::Unresolved {
            reason: format!(
                "spec.gateway.tls.secretRef {} is a Kubernetes Secret: pass --tls-cert and --tls-key, or run the operator",
                tls.secret_ref
                    .as_ref()
                    .map(|s| s.name.as_str())
                    .unwrap_or("?")
            ),
        },
    };
    let ns = sfe
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = sfe
        .metadata
        .name
        .clone()
        .context("metadata.name is required")?;
    Ok(Desired::from_spec(&ns, &name, &sfe.spec, cert))
}

fn blocking(f: &[Finding]) -> usize {
    f.iter()
        .filter(|f| f.severity != Severity::Advisory)
        .count()
}

/// The manifest, admitted and resolved, and one observation of Azure.
async fn read(t: &Target) -> anyhow::Result<(Desired, fhirlock_core::Observed)> {
    let sfe = load(&t.file)?;
    let d = desired(t, &sfe)?;
    let arm = t.azure.client()?;
    let o = observe::read_all(&arm, &d)
        .await
        .map_err(|e| anyhow::anyhow!("reading Azure: {e}"))?;
    Ok((d, o))
}

/// `fhirlock audit`: exit 0 compliant, 1 findings, 2 error. A resource the manifest names that
/// does not exist (or is not readable) is an error, not "compliant": a typo in an ID must not
/// pass a CI gate.
pub async fn audit(t: &Target, output: Output) -> anyhow::Result<i32> {
    let (d, o) = read(t).await?;
    let findings = posture::findings(&d, &o);
    let pre = preflight::check(&d, &o);
    let missing: Vec<_> = pre
        .iter()
        .filter(|p| p.code.ends_with("NotFound"))
        .collect();
    let compliant = missing.is_empty() && blocking(&findings) == 0;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"findings": findings, "preflight": pre, "compliant": compliant})
            )?
        ),
        Output::Sarif => println!(
            "{}",
            serde_json::to_string_pretty(&sarif(&findings, &t.file))?
        ),
        Output::Table => print_findings(&d, &findings, &pre),
    }
    for m in &missing {
        eprintln!("error: {}: {}", m.code, m.message);
    }
    Ok(if !missing.is_empty() {
        2
    } else if compliant {
        0
    } else {
        1
    })
}

fn print_findings(d: &Desired, findings: &[Finding], pre: &[preflight::PreflightFailure]) {
    if findings.is_empty() {
        println!("no findings: only the gateway reaches {}", d.site_id);
    } else {
        println!("{:<9} {:<40} MESSAGE", "SEVERITY", "CODE");
        for f in findings {
            println!("{:<9} {:<40} {}", f.severity.as_str(), f.code, f.message);
        }
    }
    for p in pre {
        println!("pre-flight {}: {}", p.code, p.message);
    }
    println!(
        "{} finding(s), {} blocking",
        findings.len(),
        blocking(findings)
    );
}

/// Where a SARIF log's tool and rules point for help: the posture catalogue.
pub(crate) const POSTURE_DOC: &str =
    "https://github.com/fhirlock/fhirlock/blob/main/docs/posture.md";

/// A finding's SARIF `level`: code scanning shows `error` and `warning` as alerts.
pub(crate) fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::High => "error",
        Severity::Medium | Severity::Low => "warning",
        Severity::Advisory => "note",
    }
}

/// A SARIF 2.1.0 log of one fhirlock run with its rules and results; audit and scan share it so
/// that code scanning sees one tool.
pub(crate) fn sarif_log(rules: Vec<Value>, results: Vec<Value>) -> Value {
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "fhirlock", "version": env!("CARGO_PKG_VERSION"),
                "informationUri": POSTURE_DOC, "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// Code scanning (GitHub, Azure DevOps) reads SARIF 2.1.0.
fn sarif(findings: &[Finding], file: &Path) -> Value {
    let mut codes: Vec<&str> = findings.iter().map(|f| f.code.as_str()).collect();
    codes.sort();
    codes.dedup();
    let rules = codes
        .iter()
        .map(|c| json!({"id": c, "name": c, "shortDescription": {"text": c}}))
        .collect();
    let results = findings
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.code,
                "level": sarif_level(f.severity),
                "message": {"text": f.message},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": file.display().to_string()}},
                    "logicalLocations": [{"fullyQualifiedName": f.resource_id, "kind": "resource"}],
                }],
            })
        })
        .collect();
    sarif_log(rules, results)
}

/// `fhirlock plan`: the steps, resource, field, from → to, why. Exit 2 when pre-flight stops it;
/// otherwise 0, or with `detailed` (like `terraform plan -detailed-exitcode`) 0 when Azure
/// matches the spec and 1 when changes are pending.
pub async fn plan(t: &Target, output: Output, detailed: bool) -> anyhow::Result<i32> {
    let (d, o) = read(t).await?;
    let pre = preflight::check(&d, &o);
    let p = plan::plan(&d, &o);
    if output == Output::Json {
        let steps: Vec<Value> = p
            .steps
            .iter()
            .map(|s| {
                json!({"kind": s.kind, "resourceId": s.resource_id, "method": s.method, "changes": s.changes,
                       "reason": s.reason, "waitingFor": s.waiting_for, "creates": s.creates})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"preflight": pre, "steps": steps}))?
        );
    } else {
        for f in &pre {
            println!("STOP {}: {}", f.code, f.message);
        }
        if p.is_empty() {
            println!("no changes: Azure matches the spec");
        }
        for (i, s) in p.steps.iter().enumerate() {
            let when = s
                .waiting_for
                .as_ref()
                .map(|w| format!(" (after {w})"))
                .unwrap_or_default();
            println!("{}. {} {} {}{when}", i + 1, s.kind, s.method, s.resource_id);
            println!("   why: {}", s.reason);
            for c in &s.changes {
                println!("   {c}");
            }
        }
    }
    Ok(if !pre.is_empty() {
        2
    } else if detailed && !p.is_empty() {
        1
    } else {
        0
    })
}

/// `fhirlock apply`: run the plan until converged, one long-running operation at a time. An
/// endpoint in Audit mode is never written: exit 0 when Azure already matches, else 1.
pub async fn apply(t: &Target, timeout: Duration) -> anyhow::Result<i32> {
    let sfe = load(&t.file)?;
    let d = desired(t, &sfe)?;
    let arm = t.azure.client()?;
    let no_status = SecuredFhirEndpointStatus::default();
    let deadline = Instant::now() + timeout;
    let mut writes = 0usize;
    let mut failed_operations = 0;
    let mut backoff = Duration::from_secs(1);
    // Since when Cosmos DB has admitted the integration subnet (status, in the controller).
    let (mut admitted_since, mut said) = (None, None);
    loop {
        if Instant::now() > deadline {
            bail!("not converged after {timeout:?}");
        }
        let o = match observe::read_all(&arm, &d).await {
            Ok(o) => o,
            Err(e) if e.class.is_retryable() => {
                eprintln!("  reading Azure: {e}; retrying");
                tokio::time::sleep(e.retry_after.unwrap_or(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(e) => bail!("reading Azure: {e}"),
        };
        let clock = Clock::at(Timestamp::now(), admitted_since, t.cosmos.propagation());
        let assessment = Assessment::at(&d, &o, &clock);
        admitted_since = assessment.cosmos_rule_since;
        let look = Look {
            desired: &d,
            assessment,
            gateway: None,
            previous: &no_status,
            generation: None,
            created: None,
        };
        let decision = decide::decide(&look, None);
        let assessment = &decision.assessment;
        if !assessment.preflight.is_empty() {
            for f in &assessment.preflight {
                eprintln!("STOP {}: {}", f.code, f.message);
            }
            return Ok(2);
        }
        let Some(pass) = decision.writes else {
            if assessment.plan.is_empty() {
                println!("converged: {writes} write(s); {}", posture_line(&d, &o));
                return Ok(0);
            }
            eprintln!(
                "mode: Audit: fhirlock never writes to Azure for this endpoint; {} change(s) not applied (see fhirlock plan)",
                assessment.plan.steps.len()
            );
            return Ok(1);
        };
        match stage_apply::run(&arm, &pass.steps, |s| {
            println!("→ {} {} {}", s.kind, s.method, s.resource_id);
            true
        })
        .await
        {
            Ok(Applied::Done { answers } | Applied::Stopped { answers }) => {
                let n = answers.len();
                writes += n;
                if n == 0 {
                    // Only waiting steps: Azure is still settling (an endpoint provisioning, a
                    // Cosmos DB firewall change propagating).
                    say_wait(assessment, &mut said);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Ok(Applied::Pending {
                answers,
                operation,
                step,
            }) => {
                writes += answers.len() + 1;
                loop {
                    match arm.poll(&operation).await {
                        Ok(OperationStatus::InProgress { retry_after }) => {
                            println!("  … {} in progress", step.kind);
                            tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(2))).await;
                        }
                        Ok(OperationStatus::Succeeded) => {
                            println!("  ✓ {}", step.kind);
                            break;
                        }
                        Ok(OperationStatus::Failed(e)) => {
                            failed_operations += 1;
                            eprintln!("  ✗ {} failed: {e}", step.kind);
                            if failed_operations > 3 {
                                bail!("{} failed {failed_operations} times: {e}", step.kind);
                            }
                            break;
                        }
                        Err(e) if e.class.is_retryable() => {
                            tokio::time::sleep(e.retry_after.unwrap_or(backoff)).await
                        }
                        Err(e) => bail!("polling {}: {e}", step.kind),
                    }
                }
            }
            Err((n, e)) => {
                writes += n;
                match e.class {
                    ErrorClass::Throttled | ErrorClass::Transient | ErrorClass::Conflict => {
                        eprintln!("  {}: {e}; retrying", e.class.as_str());
                        tokio::time::sleep(e.retry_after.unwrap_or(backoff)).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                    ErrorClass::Terminal | ErrorClass::Auth => bail!("{e}"),
                }
            }
        }
    }
}

/// Prints what the first waiting step waits for, once per change.
fn say_wait(assessment: &Assessment, said: &mut Option<String>) {
    let wait = assessment
        .plan
        .steps
        .iter()
        .find_map(|s| s.waiting_for.as_ref().map(|w| format!("{}: {w}", s.kind)));
    if let Some(w) = wait.filter(|w| Some(w) != said.as_ref()) {
        println!("  … waiting for {w}");
        *said = Some(w);
    }
}

fn posture_line(d: &Desired, o: &fhirlock_core::Observed) -> String {
    let f = posture::findings(d, o);
    format!(
        "{} blocking finding(s), {} advisory",
        blocking(&f),
        f.len() - blocking(&f)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_the_azure_cli_only_where_the_environment_names_no_credential() {
        let env =
            |vars: &'static [&'static str]| move |k: &str| vars.contains(&k).then(String::new);
        let table: [(Credential, &'static [&'static str], Option<&str>); 7] = [
            (Credential::Auto, &[], Some("azure-cli")),
            (Credential::Auto, &["AZURE_TENANT_ID"], Some("azure-cli")),
            // ArmConfig's own rules then choose (or refuse both).
            (Credential::Auto, &["AZURE_CLIENT_SECRET"], None),
            (Credential::Auto, &["AZURE_FEDERATED_TOKEN_FILE"], None),
            (
                Credential::AzureCli,
                &["AZURE_CLIENT_SECRET"],
                Some("azure-cli"),
            ),
            (Credential::ManagedIdentity, &[], Some("managed-identity")),
            (Credential::ClientSecret, &[], Some("client-secret")),
        ];
        for (flag, vars, want) in table {
            assert_eq!(flag.kind(env(vars)), want, "{flag:?} {vars:?}");
        }
    }
}
