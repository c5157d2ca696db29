//! `fhirlock run`: the controller's wiring. The reconcile itself is in [`crate::reconcile`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fhirlock_api::SecuredFhirEndpoint;
use fhirlock_core::peers::{Claim, Peers};
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt as _, predicates, watcher};

use crate::config::OperatorConfig;
use crate::metrics_auth::Authorizer;
use crate::reconcile::resolve::Identities;
use crate::reconcile::{self, Context, Error, Settings};
use crate::telemetry::{self, Metrics, Secure, Serving};
use crate::watch_health::WatchHealth;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Tenancy and cloud configuration (docs/operations.md). Without it no namespace may touch Azure.
    #[arg(long, env = "FHIRLOCK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Serve that port over HTTPS and /metrics only to callers the apiserver authenticates
    /// (TokenReview) and authorises for GET /metrics (SubjectAccessReview), as controller-runtime's
    /// secure metrics. Off by default, as there; the Helm chart turns it on.
    #[arg(long)]
    pub metrics_secure: bool,
    /// With --metrics-secure: a directory with tls.crt and tls.key (a mounted Secret, re-read when
    /// it changes). Without it a self-signed certificate is made at start.
    #[arg(long, requires = "metrics_secure")]
    pub metrics_cert_dir: Option<PathBuf>,
    /// /healthz fails once a watch (of the endpoints, or of a tenant namespace's Secrets) has
    /// failed this many seconds without a success in between: the apiserver gone, or the RBAC to
    /// list them revoked.
    #[arg(long, default_value_t = 120)]
    pub watch_failure_seconds: u64,
    /// Run with a Lease so that, of several replicas, only the leader acts.
    #[arg(long)]
    pub leader_election: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "fhirlock-system")]
    pub lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "fhirlock")]
    pub lease_name: String,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds between comparisons of a converged endpoint with Azure (jittered ±10%).
    #[arg(long, default_value_t = 300)]
    pub resync_seconds: u64,
    /// The least time between two reads of an endpoint's backend health, for its Reachable
    /// condition. Each read is a POST (counted against the subscription's write bucket) and one
    /// poll; it happens only on a pass, so at most once per resync.
    #[arg(long, default_value_t = 900)]
    pub backend_health_seconds: u64,
    /// Endpoints reconciled at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// Share (0–1) of a subscription's ARM write bucket fhirlock may use before deferring writes.
    #[arg(long, default_value_t = 0.5)]
    pub arm_budget_share: f64,
    /// How fast ARM refills a subscription's write bucket, per second (Azure documents 10).
    #[arg(long, default_value_t = 10.0)]
    pub arm_write_refill_per_second: f64,
    /// How fast ARM refills a subscription's read bucket, per second (Azure documents 25).
    #[arg(long, default_value_t = 25.0)]
    pub arm_read_refill_per_second: f64,
    /// The largest write bucket fhirlock assumes (Azure documents 200); a smaller one is learnt
    /// from ARM's answers.
    #[arg(long, default_value_t = 200)]
    pub arm_write_bucket_size: u32,
    /// The largest read bucket fhirlock assumes (Azure documents 250).
    #[arg(long, default_value_t = 250)]
    pub arm_read_bucket_size: u32,
    /// Log format.
    #[arg(long, value_parser = ["json", "text"], default_value = "json")]
    pub log_format: String,
    #[command(flatten)]
    pub cosmos: crate::oneshot::CosmosArgs,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.log_format == "json");
    let client = kube::Client::try_default().await?;
    let config = match &args.config {
        Some(p) => OperatorConfig::load(p)?,
        None => OperatorConfig::default(),
    };
    let tenant_secrets = tenant_secrets(&config);
    let namespaces = tenant_namespaces(&config);
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("fhirlock-{}", std::process::id()));
    let metrics = Metrics::new();

    let shutdown = shutdown_signal().shared();

    let leadership = if args.leader_election {
        Some(
            crate::leader::elect(
                client.clone(),
                &args.lease_namespace,
                &args.lease_name,
                &identity,
                Duration::from_secs(15),
            )
            .await?,
        )
    } else {
        None
    };
    let leader = leadership
        .as_ref()
        .map(|l| l.gate())
        .unwrap_or_else(crate::leader::Gate::always);

    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let health = WatchHealth::new(Duration::from_secs(args.watch_failure_seconds.max(1)));
    let serving = Serving {
        metrics: metrics.clone(),
        ready: ready_rx,
        health: health.clone(),
        secure: secure_metrics(&args, &client)?,
    };
    let (controller, store) = endpoint_controller(&client, ready_tx, &health);
    let ctx = Arc::new(Context {
        client: client.clone(),
        identities: Identities::new(client.clone(), config, metrics.clone())?
            .with_peers(store.clone()),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "fhirlock".into(),
                instance: Some(identity.clone()),
            },
        ),
        metrics: metrics.clone(),
        settings: settings(&args),
        leader,
        memory: Default::default(),
    });

    tokio::spawn(telemetry::serve(
        args.metrics_addr,
        serving,
        shutdown.clone(),
    ));

    tracing::info!(
        identity,
        leader_election = args.leader_election,
        secrets_watched_in = ?namespaces,
        "fhirlock controller starting"
    );
    watch_tenant_secrets(
        controller,
        &client,
        &namespaces,
        store,
        tenant_secrets,
        &health,
    )
    .with_config(Config::default().concurrency(args.concurrency))
    .graceful_shutdown_on(shutdown.clone())
    .run(reconcile_guarded, error_policy, ctx)
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "reconcile");
        }
    })
    .await;
    if let Some(l) = leadership {
        l.step_down().await;
    }
    Ok(())
}

pub(crate) type Endpoints = DeserializeGuard<SecuredFhirEndpoint>;

/// `--metrics-secure`: the port's TLS configuration, and the apiserver as the judge of who may
/// read `/metrics`.
fn secure_metrics(args: &RunArgs, client: &kube::Client) -> anyhow::Result<Option<Secure>> {
    if !args.metrics_secure {
        return Ok(None);
    }
    let (tls, _) = crate::metrics_auth::tls_config(args.metrics_cert_dir.as_deref())?;
    Ok(Some(Secure {
        tls,
        authorizer: Arc::new(Authorizer::new(client.clone())),
    }))
}

/// The controller over every endpoint, and the cache it reads. `ready` turns true once the first
/// list of endpoints is in the cache (`/readyz`). Signalled from the watch stream itself rather
/// than `Store::wait_until_ready`: in kube-runtime 5 that future wakes only its latest waiter, and
/// the Controller waits on it too, so a second waiter would never wake.
fn endpoint_controller(
    client: &kube::Client,
    ready: tokio::sync::watch::Sender<bool>,
    health: &WatchHealth,
) -> (Controller<Endpoints>, reflector::Store<Endpoints>) {
    // One malformed object must not stop the watch: DeserializeGuard keeps it out of the cache.
    let endpoints: Api<Endpoints> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let watch_health = health.clone();
    // Consistent lists, not `any_semantic`: after an apiserver restart a list served from its
    // watch cache can carry a resource version the next watch calls too old (410), and the
    // watcher relisted into the same 410 for minutes. One quorum read per relist is cheap.
    let stream = watcher(endpoints, watcher::Config::default())
        .default_backoff()
        .inspect(move |item| watch_health.observe("securedfhirendpoints", item))
        .reflect(writer)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) && !*ready.borrow() {
                ready.send_replace(true);
                tracing::info!("the endpoint cache is synced: ready");
            }
        })
        .applied_objects();
    let controller = Controller::for_stream(stream, store.clone());
    (
        watch_peers(controller, client, store.clone(), health),
        store,
    )
}

/// A spec change to one endpoint (created, changed, deleted: a new generation) reconciles the
/// endpoints that share its site, Cosmos DB account, VNet or gateway, so the union of their rules
/// and their conflicts follow at once rather than at their next resync. Status writes do not
/// change the generation, so they trigger nothing (or two endpoints would wake each other for
/// ever).
fn watch_peers(
    controller: Controller<Endpoints>,
    client: &kube::Client,
    store: reflector::Store<Endpoints>,
    health: &WatchHealth,
) -> Controller<Endpoints> {
    let api: Api<Endpoints> = Api::all(client.clone());
    let health = health.clone();
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .inspect(move |item| health.observe("securedfhirendpoints (spec changes)", item))
        .touched_objects()
        .predicate_filter(predicates::generation, Default::default());
    controller.watches_stream(changes, move |changed: Endpoints| {
        let Ok(changed) = changed.0 else {
            return Vec::new();
        };
        let all = store.state();
        sharing(&changed, all.iter().filter_map(|g| g.0.as_ref().ok()))
    })
}

/// The endpoints, other than `changed`, that name its site, Cosmos DB account, VNet or gateway.
fn sharing<'a>(
    changed: &SecuredFhirEndpoint,
    all: impl Iterator<Item = &'a SecuredFhirEndpoint>,
) -> Vec<ObjectRef<Endpoints>> {
    let claim = |e: &SecuredFhirEndpoint| {
        Claim::of(
            &e.namespace().unwrap_or_default(),
            &e.name_any(),
            None,
            false,
            &e.spec,
        )
    };
    let mine = claim(changed);
    all.filter(|e| claim(e).owner != mine.owner && claim(e).touches(&mine))
        .map(|e| ObjectRef::new(&e.name_any()).within(&e.namespace().unwrap_or_default()))
        .collect()
}

/// What the other endpoints in the cache claim, for `me`'s reconcile ([`fhirlock_core::peers`]).
pub(crate) fn peers_of<'a>(
    me: &SecuredFhirEndpoint,
    all: impl Iterator<Item = &'a SecuredFhirEndpoint>,
) -> Peers {
    let key = |e: &SecuredFhirEndpoint| (e.namespace(), e.name_any());
    Peers {
        created: me.metadata.creation_timestamp.as_ref().map(|t| t.0),
        others: all
            .filter(|e| key(e) != key(me))
            .map(|e| {
                Claim::of(
                    &e.namespace().unwrap_or_default(),
                    &e.name_any(),
                    e.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    e.metadata.deletion_timestamp.is_some(),
                    &e.spec,
                )
            })
            .collect(),
    }
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

fn settings(args: &RunArgs) -> Settings {
    Settings {
        resync: Duration::from_secs(args.resync_seconds),
        budget_share: args.arm_budget_share.clamp(0.0, 1.0),
        write_refill_per_second: args.arm_write_refill_per_second.max(0.0),
        read_refill_per_second: args.arm_read_refill_per_second.max(0.0),
        write_bucket_size: args.arm_write_bucket_size.max(1),
        read_bucket_size: args.arm_read_bucket_size.max(1),
        cosmos_propagation: args.cosmos.propagation(),
        backend_health: Duration::from_secs(args.backend_health_seconds.max(1)),
    }
}

/// A changed TLS or identity Secret reconciles the endpoints that name it, and a tenant's
/// client-secret Secret every endpoint of its namespace: an endpoint stalled because it was
/// missing recovers as soon as it appears. One watch per tenant namespace, because fhirlock may
/// read Secrets only there (its RBAC: a Role per tenant namespace, docs/install.md) and resolves
/// endpoints of no other namespace; no tenants, no watch. The watches are metadata-only: a
/// Secret's name and namespace are all the mapping needs, its content is read with a GET when
/// the endpoint is resolved, so no Secret content crosses the wire or sits in memory for it.
fn watch_tenant_secrets(
    controller: Controller<Endpoints>,
    client: &kube::Client,
    namespaces: &BTreeSet<String>,
    endpoints: reflector::Store<Endpoints>,
    tenant_secrets: Vec<(String, String)>,
    health: &WatchHealth,
) -> Controller<Endpoints> {
    let tenant_secrets = Arc::new(tenant_secrets);
    namespaces.iter().fold(controller, |c, ns| {
        let (endpoints, tenant_secrets) = (endpoints.clone(), tenant_secrets.clone());
        let (health, name) = (health.clone(), format!("secrets in {ns}"));
        // As Controller::watches builds it, with the watch's health reported on the way.
        let secrets = watcher(
            Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
            watcher::Config::default(),
        )
        .default_backoff()
        .inspect(move |item| health.observe(&name, item))
        .touched_objects();
        c.watches_stream(secrets, move |secret: PartialObjectMeta<Secret>| {
            let all = endpoints.state();
            let all = all.iter().filter_map(|g| g.0.as_ref().ok());
            endpoints_for_secret(
                &secret.namespace().unwrap_or_default(),
                &secret.name_any(),
                all,
                &tenant_secrets,
            )
        })
    })
}

/// The endpoints a Secret `ns/name` matters to: those of its namespace that name it (TLS,
/// `spec.identityRef`), and all of its namespace when it is the tenant's client secret.
fn endpoints_for_secret<'a>(
    ns: &str,
    name: &str,
    endpoints: impl Iterator<Item = &'a SecuredFhirEndpoint>,
    tenant_secrets: &[(String, String)],
) -> Vec<ObjectRef<Endpoints>> {
    let tenant_secret = tenant_secrets.iter().any(|(n, s)| n == ns && s == name);
    endpoints
        .filter(|sfe| sfe.namespace().as_deref() == Some(ns))
        .filter(|sfe| tenant_secret || references(sfe, name))
        .map(|sfe| ObjectRef::new(&sfe.name_any()).within(ns))
        .collect()
}

/// Every namespace of the tenancy, once each: where fhirlock watches Secrets.
fn tenant_namespaces(config: &OperatorConfig) -> BTreeSet<String> {
    config.tenants.iter().map(|t| t.namespace.clone()).collect()
}

/// `(namespace, Secret)` of every tenant whose identity is a client secret.
fn tenant_secrets(config: &OperatorConfig) -> Vec<(String, String)> {
    config
        .tenants
        .iter()
        .filter_map(|t| {
            let c = t.identity.client_secret.as_ref()?;
            Some((t.namespace.clone(), c.secret_name.clone()))
        })
        .collect()
}

fn references(sfe: &SecuredFhirEndpoint, secret: &str) -> bool {
    let tls = sfe
        .spec
        .gateway
        .tls
        .secret_ref
        .as_ref()
        .is_some_and(|r| r.name == secret);
    let id = sfe
        .spec
        .identity_ref
        .as_ref()
        .is_some_and(|r| r.name == secret);
    tls || id
}

async fn reconcile_guarded(
    obj: Arc<DeserializeGuard<SecuredFhirEndpoint>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let sfe = match &obj.0 {
        Ok(sfe) => sfe.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "skipping an object that does not deserialize");
            return Ok(Action::await_change());
        }
    };
    if !ctx.leader.is_leader() {
        // What a former leadership learnt is stale: its writes' answers by the time it leads
        // again, its per-endpoint metrics at once (the new leader exports them).
        ctx.memory.forget_followups();
        ctx.metrics.forget_all_endpoints();
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let span = tracing::info_span!("reconcile", endpoint = %reconcile::key(&sfe));
    let _enter = span.enter();
    reconcile::reconcile(Arc::new(sfe), ctx).await
}

fn error_policy(
    _obj: Arc<DeserializeGuard<SecuredFhirEndpoint>>,
    err: &Error,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(error = %err, label = err.metric_label(), "reconcile failed");
    match err {
        Error::Kube(_) => Action::requeue(Duration::from_secs(5)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn endpoint(ns: &str, name: &str) -> SecuredFhirEndpoint {
        let mut sfe: SecuredFhirEndpoint =
            serde_yaml::from_str(include_str!("../../../examples/fhir-endpoint.yaml")).unwrap();
        sfe.metadata.namespace = Some(ns.into());
        sfe.metadata.name = Some(name.into());
        sfe
    }

    fn names(refs: Vec<ObjectRef<Endpoints>>) -> Vec<String> {
        refs.iter()
            .map(|r| format!("{}/{}", r.namespace.clone().unwrap_or_default(), r.name))
            .collect()
    }

    #[test]
    fn a_secret_maps_to_the_endpoints_of_its_namespace_that_need_it() {
        let tls = endpoint("a", "tls")
            .spec
            .gateway
            .tls
            .secret_ref
            .unwrap()
            .name;
        let all = [
            endpoint("a", "one"),
            endpoint("a", "two"),
            endpoint("b", "one"),
        ];
        let tenant_secrets = vec![("a".to_owned(), "azure".to_owned())];
        let map = |ns, name| names(endpoints_for_secret(ns, name, all.iter(), &tenant_secrets));
        assert_eq!(
            map("a", &tls),
            ["a/one", "a/two"],
            "the TLS Secret they name"
        );
        assert_eq!(
            map("b", &tls),
            ["b/one"],
            "never another namespace's endpoints"
        );
        assert_eq!(
            map("a", "azure"),
            ["a/one", "a/two"],
            "the tenant's client secret"
        );
        assert!(
            map("b", "azure").is_empty(),
            "b's azure is not b's tenant secret"
        );
        assert!(map("a", "unrelated").is_empty());
    }

    #[test]
    fn a_spec_change_reconciles_the_endpoints_that_share_its_resources_and_the_peers_are_the_others()
     {
        let mut other = endpoint("b", "other");
        other.spec.app_service.id = other
            .spec
            .app_service
            .id
            .replace("fhir-server", "elsewhere");
        other.spec.cosmos_db.id = other.spec.cosmos_db.id.replace("fhir-cosmos", "elsewhere");
        other.spec.network.virtual_network_id = other
            .spec
            .network
            .virtual_network_id
            .replace("hscn-vnet", "elsewhere");
        other.spec.gateway.name = "agw-elsewhere".into();
        let mut deleting = endpoint("c", "going");
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(9).unwrap()));
        let all = [endpoint("a", "one"), endpoint("a", "two"), other, deleting];
        assert_eq!(
            names(sharing(&all[0], all.iter())),
            ["a/two", "c/going"],
            "the same site, account, VNet and gateway; not itself, not an unrelated endpoint"
        );
        let mut me = endpoint("a", "one");
        me.metadata.creation_timestamp = Some(Time(Timestamp::from_second(5).unwrap()));
        let peers = peers_of(&me, all.iter());
        assert_eq!(peers.created, Some(Timestamp::from_second(5).unwrap()));
        let owners: Vec<_> = peers
            .others
            .iter()
            .map(|c| (c.owner.as_str(), c.deleting))
            .collect();
        assert_eq!(
            owners,
            [("a/two", false), ("b/other", false), ("c/going", true)]
        );
    }

    #[test]
    fn secrets_are_watched_in_each_tenant_namespace_once_and_nowhere_else() {
        let cfg: OperatorConfig = serde_yaml::from_str(
            "tenants:\n- {namespace: b, scopes: [], identity: {operator: {}}}\n- {namespace: a, scopes: [], identity: {operator: {}}}\n- {namespace: b, scopes: [], identity: {operator: {}}}\n",
        )
        .unwrap();
        assert_eq!(
            tenant_namespaces(&cfg).into_iter().collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(
            tenant_namespaces(&OperatorConfig::default()).is_empty(),
            "no tenants: no Secret watch at all"
        );
    }
}
