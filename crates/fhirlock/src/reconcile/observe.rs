//! **observe**: what Azure holds now. Resumes the long-running operation status records (one
//! poll), then reads the endpoint's resources: all seven (eight with a WAF_v2 gateway's policy,
//! one more for fhirlock's own policy while it waits to be deleted),
//! or right after fhirlock's own writes
//! only what their answers left unknown. ARM I/O only; what to make of it is `decide`'s.

use std::time::{Duration, Instant};

use fhirlock_api::v1alpha1::GatewayStatus;
use fhirlock_api::{SecuredFhirEndpoint, SecuredFhirEndpointStatus};
use fhirlock_arm::{ArmClient, ArmError};
use fhirlock_core::observed::{Slot, api_version};
use fhirlock_core::plan::{Clock, host_name};
use fhirlock_core::status::Assessment;
use fhirlock_core::{Desired, Observed, observed};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::apply::Answer;
use super::decide::{self, AfterPoll, Look};
use super::memory::{Bucket, BudgetRule, Followup};
use super::report::{publish, spread};
use super::resolve::Resolved;
use super::{Context, Exit, key};

/// GETs everything the endpoint involves: 8 reads (the VNet carries its subnets), one more for
/// a WAF_v2 gateway's WAF policy. The gateway, feature and policy reads may be 404; the others become pre-flight failures when missing.
pub async fn read_all(arm: &ArmClient, d: &Desired) -> Result<Observed, ArmError> {
    read(arm, d, |r| r, &[]).await
}

/// As [`read_all`], for deletion: a resource whose resource group (or subscription) is gone is
/// gone too. ARM answers its GET with 404 `ResourceGroupNotFound`, which in a reconcile is an
/// error (the spec names something that is not there), but a teardown must take it as "nothing
/// left to remove", or the finalizer would never be released. The App Service certificate and
/// host-name binding are read when `created` (`status.createdResources`) records them, even once
/// the spec no longer says Preserve: what fhirlock created goes with it.
pub async fn read_for_teardown(
    arm: &ArmClient,
    d: &Desired,
    created: &[String],
) -> Result<Observed, ArmError> {
    read(arm, d, parent_gone_is_absent, created).await
}

/// One GET's result: the resource, `None` when absent.
type Read = Result<Option<Value>, ArmError>;

/// A 404 because a parent of the resource does not exist means the resource does not either.
pub fn parent_gone_is_absent(r: Read) -> Read {
    match r {
        Err(e)
            if e.is_not_found()
                && [
                    "ResourceGroupNotFound",
                    "ParentResourceNotFound",
                    "SubscriptionNotFound",
                ]
                .iter()
                .any(|c| e.code.eq_ignore_ascii_case(c)) =>
        {
            Ok(None)
        }
        other => other,
    }
}

async fn read(
    arm: &ArmClient,
    d: &Desired,
    absent: fn(Read) -> Read,
    created: &[String],
) -> Result<Observed, ArmError> {
    let config_id = d.site_config_id();
    // The site's private endpoint connections are not in the Site model (Web 2024-11-01): they
    // are a list of their own (WebApps_GetPrivateEndpointConnectionList).
    let endpoints_id = format!("{}/privateEndpointConnections", d.site_id);
    // All six run to their answer even when one fails (`join!`, not `try_join!`): a dropped
    // request is still counted by ARM, and must be by fhirlock's metrics too.
    let (vnet, gateway, site, site_config, cosmos, endpoints) = tokio::join!(
        arm.get(&d.vnet_id, api_version::NETWORK),
        arm.get(&d.gateway.id, api_version::NETWORK),
        arm.get(&d.site_id, api_version::WEB),
        arm.get(&config_id, api_version::WEB),
        arm.get(&d.cosmos_id, api_version::COSMOS),
        arm.get(&endpoints_id, api_version::WEB),
    );
    let (vnet, gateway, site, site_config, cosmos, endpoints) = (
        absent(vnet)?,
        absent(gateway)?,
        absent(site)?,
        absent(site_config)?,
        absent(cosmos)?,
        absent(endpoints)?,
    );
    let farm_id = site
        .as_ref()
        .and_then(|s| s.pointer("/properties/serverFarmId"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let farm = async {
        match &farm_id {
            Some(id) => absent(arm.get(id, api_version::WEB).await),
            None => Ok(None),
        }
    };
    // The network-isolation feature matters only to create the gateway (pre-flight), so it is
    // read only while there is none: a converged endpoint never reads it.
    let feature = async {
        if gateway.is_some() {
            return Ok(None);
        }
        isolation_feature(absent(
            arm.get(&d.isolation_feature_id(), api_version::FEATURES)
                .await,
        ))
    };
    // hostHeader Preserve only: the certificate fhirlock uploads and the site's binding of the
    // host name. With Default neither is read, unless a teardown has them to remove.
    let preserve = |id: String| async move {
        if d.preserves_host() || created.iter().any(|c| fhirlock_core::id::same(c, &id)) {
            absent(arm.get(&id, api_version::WEB).await)
        } else {
            Ok(None)
        }
    };
    // The WAF policy: a WAF_v2 gateway's, or the one fhirlock created for a gateway that has
    // since become Standard_v2 (to delete it). Other endpoints never pay for it.
    let waf_policy = async {
        if d.reads_waf_policy() {
            absent(arm.get(d.waf_policy_read_id(), api_version::NETWORK).await)
        } else {
            Ok(None)
        }
    };
    // fhirlock's own policy after the spec named another: only while status records it, to
    // delete it once the gateway lets go; once deleted, status forgets it and this read stops.
    let former_waf_policy = async {
        match d.former_waf_policy_id() {
            Some(id) => absent(arm.get(id, api_version::NETWORK).await),
            None => Ok(None),
        }
    };
    // A renewed Secret's predecessors (host_name.rs): only those status records, to delete them.
    let former_certificates = async {
        let mut read = Vec::new();
        for id in host_name::former_certificate_ids(d, created) {
            let body = absent(arm.get(&id, api_version::WEB).await)?;
            read.push((id, body));
        }
        Ok::<_, ArmError>(read)
    };
    let (server_farm, isolation_feature, site_certificate, host_name_binding, waf_policy, former) = tokio::join!(
        farm,
        feature,
        preserve(d.site_certificate_id()),
        preserve(d.host_name_binding_id()),
        waf_policy,
        former_waf_policy
    );
    let former_site_certificates = former_certificates.await?;
    let (server_farm, isolation_feature) = (server_farm?, isolation_feature?);
    let (site_certificate, host_name_binding) = (site_certificate?, host_name_binding?);
    let (waf_policy, former_waf_policy) = (waf_policy?, former?);
    Ok(Observed {
        vnet,
        gateway,
        site,
        site_config,
        server_farm,
        cosmos,
        isolation_feature,
        site_private_endpoints: endpoints
            .map(|l| l["value"].as_array().cloned().unwrap_or_default()),
        site_certificate,
        host_name_binding,
        former_site_certificates,
        waf_policy,
        former_waf_policy,
    })
}

/// The feature registration's state. It lives at subscription scope, so an identity with roles
/// on resource groups only (the least-privilege setup) is refused it: that is "Unreadable", for
/// pre-flight to explain, not a failed pass.
fn isolation_feature(r: Read) -> Result<Option<String>, ArmError> {
    match r {
        Ok(f) => Ok(f.and_then(|f| {
            f.pointer("/properties/state")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })),
        Err(e) if e.status == Some(403) => Ok(Some(observed::FEATURE_UNREADABLE.to_owned())),
        Err(e) => Err(e),
    }
}

/// `known` with the resources in `ids` read again (one GET each). Falls back to a full
/// [`read_all`] when one of them is not a resource `Observed` holds.
pub async fn reread(
    arm: &ArmClient,
    d: &Desired,
    mut known: Observed,
    ids: &[String],
) -> Result<Observed, ArmError> {
    for id in ids {
        let Some(slot) = observed::slot(d, id) else {
            return read_all(arm, d).await;
        };
        known.absorb(&slot, arm.get(id, api_version_of(&slot)).await?);
    }
    Ok(known)
}

/// One look at the time `clock` says: plans on the followup when it leads to a next write
/// ([`super::decide::partial_look_suffices`]), otherwise on a full read.
pub async fn look(
    arm: &ArmClient,
    d: &Desired,
    followup: Option<Followup>,
    clock: &Clock,
) -> Result<(Observed, Assessment), ArmError> {
    if let Some(f) = followup {
        let observed = reread(arm, d, f.observed, &f.reread).await?;
        let assessment = Assessment::at(d, &observed, clock);
        if super::decide::partial_look_suffices(&assessment) {
            return Ok((observed, assessment));
        }
    }
    let observed = read_all(arm, d).await?;
    let assessment = Assessment::at(d, &observed, clock);
    Ok((observed, assessment))
}

/// The plan's clock for this pass: now, and since when status says Cosmos DB has admitted the
/// integration subnet.
pub fn clock_of(sfe: &SecuredFhirEndpoint, propagation: Duration) -> Clock {
    let since = sfe
        .status
        .as_ref()
        .and_then(|s| s.cosmos_rule_since.as_ref())
        .map(|t| t.0);
    Clock::at(Timestamp::now(), since, propagation)
}

/// What fhirlock knows right after its writes: `before` with ARM's answers taken in, and what
/// those answers left unknown to read again (a write answered without a body, the resource of a
/// long-running operation). `None` when nothing was written.
pub fn after_writes(
    d: &Desired,
    before: &Observed,
    answers: &[Answer],
    operation: Option<&str>,
) -> Option<(Observed, Vec<String>)> {
    if answers.is_empty() && operation.is_none() {
        return None;
    }
    let mut observed = before.clone();
    let mut reread = Vec::new();
    let mut read_back = |id: &str| {
        let id = read_back_id(d, id);
        if !reread.contains(&id) {
            reread.push(id);
        }
    };
    for a in answers {
        match (observed::slot(d, &a.resource_id), &a.body) {
            (Some(slot), Some(body)) => observed.absorb(&slot, Some(body.clone())),
            _ => read_back(&a.resource_id),
        }
    }
    if let Some(op) = operation {
        read_back(op);
    }
    Some((observed, reread))
}

/// What to GET to learn what a write to `id` did: the resource itself, except for a subnet,
/// whose VNet is read instead (one GET either way: the VNet carries its subnets). A subnet's etag
/// is its VNet's, shared by every subnet in it (docs/azure-fidelity.md C2), so fhirlock's own
/// write to one subnet moved the other's too: reading back only the written subnet would leave
/// the other with a stale etag, and its write would be refused (412) and cost a full read.
fn read_back_id(d: &Desired, id: &str) -> String {
    match observed::slot(d, id) {
        Some(Slot::Subnet(_)) => d.vnet_id.clone(),
        _ => id.to_owned(),
    }
}

fn api_version_of(slot: &Slot) -> &'static str {
    match slot {
        Slot::Vnet | Slot::Subnet(_) | Slot::Gateway => api_version::NETWORK,
        Slot::WafPolicy | Slot::FormerWafPolicy => api_version::NETWORK,
        Slot::Site | Slot::SiteConfig | Slot::SiteCertificate | Slot::HostNameBinding => {
            api_version::WEB
        }
        Slot::Cosmos => api_version::COSMOS,
    }
}

// ---- the stage, in the controller ----------------------------------------------------------

/// What the observe stage saw.
#[derive(Debug)]
pub struct Seen {
    pub observed: Observed,
    pub assessment: Assessment,
}

impl Seen {
    /// The hand-off to `decide`.
    pub fn look<'a>(&self, desired: &'a Desired, sfe: &'a SecuredFhirEndpoint) -> Look<'a> {
        Look {
            desired,
            assessment: self.assessment.clone(),
            gateway: self.observed.gateway().map(|g| GatewayStatus {
                id: g.id.clone(),
                private_ip_address: g.private_ip(),
                provisioning_state: g.properties.provisioning_state.clone(),
                certificate_not_after: None,
            }),
            previous: sfe.status.as_ref().unwrap_or(&NO_STATUS),
            generation: sfe.metadata.generation,
            created: sfe.metadata.creation_timestamp.clone(),
        }
    }
}

static NO_STATUS: SecuredFhirEndpointStatus = SecuredFhirEndpointStatus {
    observed_generation: None,
    conditions: Vec::new(),
    gateway: None,
    findings: Vec::new(),
    finding_count: None,
    pending_operations: Vec::new(),
    plan: Vec::new(),
    next_steps: Vec::new(),
    last_sync_time: None,
    last_drift: None,
    created_resources: Vec::new(),
    cosmos_rule_since: None,
};

/// The stage: held back while the read bucket is below fhirlock's share (checked once, before
/// the poll: a reconcile that polled and was then held back would poll again next time, and many
/// endpoints doing so would spend the bucket on polls alone); then the operation in flight; then
/// the look.
pub async fn stage(ctx: &Context, sfe: &SecuredFhirEndpoint, r: &Resolved) -> Result<Seen, Exit> {
    if let Some(wait) = read_wait(ctx, &r.arm, &r.desired.subscription) {
        return Err(Exit::Requeue(spread(wait), Some(decide::Result::Ok)));
    }
    let key = key(sfe);
    let pending = sfe
        .status
        .as_ref()
        .and_then(|s| s.pending_operations.first());
    let rejected = pending.and_then(|p| decide::reject_pending(p, &r.desired, Timestamp::now()));
    if let Some(note) = &rejected {
        publish(ctx, sfe, note).await;
        ctx.memory.endpoint(&key, |m| m.followup = None);
    }
    if let Some(p) = pending.filter(|_| rejected.is_none()) {
        match decide::after_poll(p, r.arm.poll(&decide::operation_of(p)).await) {
            AfterPoll::Running(wait) => {
                return Err(Exit::Requeue(wait, Some(decide::Result::Ok)));
            }
            AfterPoll::Retry(wait) => return Err(Exit::Requeue(wait, None)),
            AfterPoll::Ended(note) => publish(ctx, sfe, &note).await,
            AfterPoll::Lost => {
                ctx.memory.endpoint(&key, |m| m.followup = None);
                tracing::warn!(endpoint = %key, "dropping an operation handle that no longer polls");
            }
            AfterPoll::Dropped(note) => {
                ctx.memory.endpoint(&key, |m| m.followup = None);
                publish(ctx, sfe, &note).await;
            }
        }
    }
    let followup = ctx.memory.endpoint(&key, |m| {
        m.take_followup(sfe.metadata.generation, Instant::now())
    });
    let clock = clock_of(sfe, ctx.settings.cosmos_propagation);
    let (observed, assessment) = look(&r.arm, &r.desired, followup, &clock)
        .await
        .map_err(|e| Exit::Failed(e, Box::new(r.desired.clone())))?;
    Ok(Seen {
        observed,
        assessment,
    })
}

/// As [`super::apply::write_wait`], for the read bucket (every GET reports it).
fn read_wait(ctx: &Context, arm: &ArmClient, subscription: &str) -> Option<Duration> {
    let budget = arm.budget(subscription)?;
    let s = &ctx.settings;
    let rule = BudgetRule {
        share: s.budget_share,
        refill: s.read_refill_per_second,
        size: s.read_bucket_size,
    };
    ctx.memory.bucket_wait(
        subscription,
        Bucket::Reads,
        budget.reads?,
        budget.observed_at.elapsed(),
        rule,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhirlock_arm::ErrorClass;

    #[test]
    fn after_a_subnet_write_the_vnet_is_read_back_for_its_shared_etag() {
        let sfe: SecuredFhirEndpoint =
            serde_yaml::from_str(include_str!("../../../../examples/fhir-endpoint.yaml")).unwrap();
        let cert = fhirlock_core::Certificate::Unresolved {
            reason: "test".into(),
        };
        let d = Desired::from_spec("default", "patient-records", &sfe.spec, cert);
        let answered = |id: &str| Answer {
            resource_id: id.to_owned(),
            body: Some(serde_json::json!({"name": "x", "properties": {}})),
        };
        let bodiless = |id: &str| Answer {
            resource_id: id.to_owned(),
            body: None,
        };
        let gw_subnet = d.gateway_subnet.id.to_ascii_uppercase();
        let int_subnet = d.integration_subnet.id.clone();
        // (case, answers, the operation's resource, what is read back)
        type Case<'a> = (&'a str, Vec<Answer>, Option<&'a str>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "a subnet's operation: its VNet",
                vec![answered(&int_subnet)],
                Some(&int_subnet),
                vec![&d.vnet_id],
            ),
            (
                "a subnet named in another case: its VNet",
                vec![],
                Some(&gw_subnet),
                vec![&d.vnet_id],
            ),
            (
                "a subnet answered without a body, then its operation: the VNet once",
                vec![bodiless(&int_subnet)],
                Some(&int_subnet),
                vec![&d.vnet_id],
            ),
            (
                "the gateway's operation: the gateway",
                vec![answered(&d.site_id)],
                Some(&d.gateway.id),
                vec![&d.gateway.id],
            ),
            (
                "synchronous answers only: nothing",
                vec![answered(&d.site_id)],
                None,
                vec![],
            ),
        ];
        for (case, answers, operation, want) in cases {
            let (_, reread) = after_writes(&d, &Observed::default(), &answers, operation).unwrap();
            assert_eq!(reread, want, "{case}");
        }
        assert!(after_writes(&d, &Observed::default(), &[], None).is_none());
    }

    #[test]
    fn for_a_teardown_a_missing_parent_means_a_missing_resource() {
        let err = |status: u16, code: &str| {
            Err(ArmError {
                status: Some(status),
                ..ArmError::new(ErrorClass::Terminal, code, "m")
            })
        };
        let table = [
            (err(404, "ResourceGroupNotFound"), Some(None)),
            (err(404, "resourcegroupnotfound"), Some(None)),
            (err(404, "ParentResourceNotFound"), Some(None)),
            (err(404, "SubscriptionNotFound"), Some(None)),
            (err(403, "AuthorizationFailed"), None),
            (err(400, "ResourceGroupNotFound"), None),
            (Ok(None), Some(None)),
        ];
        for (given, want) in table {
            let got = parent_gone_is_absent(given.clone());
            match want {
                Some(v) => assert_eq!(got.ok(), Some(v), "{given:?}"),
                None => assert!(got.is_err(), "{given:?}"),
            }
        }
    }
}
