//! Pages of the operator's own `Metrics` (`fhirlock::telemetry`), for checks of what dashboards
//! and alerts read: every family has a series, as a family only appears on `/metrics` once it has
//! one.

use std::time::Duration;

use fhirlock::telemetry::Metrics;
use fhirlock_arm::{ErrorClass, RateLimitHeaders, RequestEvent, RequestObserver};

/// `scrapes` renders of one `Metrics`, with every family populated and the counters and
/// histograms growing between them.
pub fn every_family(scrapes: usize) -> Vec<String> {
    let m = Metrics::new();
    let sub = "6f1c2a52-0000-4000-8000-000000000001";
    m.set_endpoint(
        "fhir",
        "patient-records",
        false,
        &[
            ("ScmSitePublic", "High", 1),
            ("CosmosKeyAuthEnabled", "Advisory", 1),
        ],
    );
    m.set_reachable("fhir", "patient-records", Some(false));
    m.set_endpoint("fhir", "unknown", true, &[]);
    m.set_reachable("fhir", "unknown", None);
    m.set_certificate_expiry("fhir", "patient-records", Some(1_900_000_000));
    m.released_without_cleanup("annotation");
    (0..scrapes)
        .map(|_| {
            for result in ["ok", "error", "stalled"] {
                m.reconcile(result, Duration::from_millis(300));
            }
            m.drift_corrected("Microsoft.Web/sites/config");
            m.deferred_writes(sub);
            m.time_to_ready(420.0);
            for (status, class) in [(200, None), (429, Some(ErrorClass::Throttled))] {
                m.on_request(&RequestEvent {
                    method: "GET",
                    resource_type: "Microsoft.Web/sites",
                    subscription: Some(sub),
                    status: Some(status),
                    duration: Duration::from_millis(40),
                    class,
                    rate_limit: RateLimitHeaders {
                        reads: Some(240),
                        ..Default::default()
                    },
                    retry_after: None,
                    poll: false,
                    attempt: 0,
                });
            }
            m.render()
        })
        .collect()
}
