//! The chart's alerts, evaluated by Prometheus' PromQL engine on metrics fhirlock exports.

use super::*;

fn alert_check() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| built("hack/alert-check/build.sh").join("alert-check"))
}

/// The operator's /metrics page as its own `Metrics` renders it, after one of each thing the
/// alerts watch: a reconcile of each result the controller records (`ok`, `error`, `stalled`), an
/// endpoint not Ready with findings and a listener certificate, and ARM answering 429.
fn operator_metrics_page() -> String {
    use fhirlock::telemetry::Metrics;
    use fhirlock_arm::{ErrorClass, RateLimitHeaders, RequestEvent, RequestObserver};
    use std::time::Duration;
    let m = Metrics::new();
    for result in ["ok", "error", "stalled"] {
        m.reconcile(result, Duration::from_millis(300));
    }
    m.set_endpoint(
        "fhir",
        "patient-records",
        false,
        &[
            ("CosmosIpRule", "High", 2),
            ("ScmSitePublic", "High", 1),
            ("CosmosKeyAuthEnabled", "Advisory", 1),
        ],
    );
    m.set_certificate_expiry("fhir", "patient-records", Some(1_936_742_400));
    m.on_request(&RequestEvent {
        method: "GET",
        resource_type: "Microsoft.Web/sites",
        subscription: Some("6f1c2a52-0000-4000-8000-000000000001"),
        status: Some(429),
        duration: Duration::from_millis(40),
        class: Some(ErrorClass::Throttled),
        rate_limit: RateLimitHeaders::default(),
        retry_after: Some(Duration::from_secs(10)),
        poll: false,
        attempt: 0,
    });
    m.render()
}

/// Runs alert-check: its JSON lines, and whether every check passed (exit 0; 1 is a failed check,
/// anything else bad input).
fn alert_check_run(args: &[&Path]) -> (Vec<Value>, bool) {
    let out = Command::new(alert_check()).args(args).output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "alert-check {args:?}: {}",
        text(&out.stderr)
    );
    let lines = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, out.status.success())
}

fn failing(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["ok"] != true)
        .map(Value::to_string)
        .collect()
}

/// `test` cases as (alertname, eval_time).
fn case_ids<'a>(cases: impl Iterator<Item = &'a Value>) -> Vec<(String, String)> {
    cases
        .map(|c| {
            (
                c["alertname"].as_str().unwrap().to_owned(),
                c["eval_time"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn chart_alerts_fire_when_they_should_on_metrics_fhirlock_exports() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    // What ships: the PrometheusRule of the chart with every option on.
    let full = chart().join("ci/full-values.yaml");
    let objs = docs(&helm_template(&["-f", full.to_str().unwrap()]));
    let rule = find(&objs, "PrometheusRule", "fhirlock").clone();
    let rules = write("rules.yaml", &serde_yaml::to_string(&rule).unwrap());
    let alerts: Vec<String> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["alert"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    let tests = root().join("deploy/helm/alerts_test.yaml");
    let page = write("metrics.txt", &operator_metrics_page());

    // Every series selector of every alert selects a series fhirlock exports.
    let (selectors, ok) = alert_check_run(&[Path::new("selectors"), &rules, &page]);
    assert!(
        ok,
        "an alert reads a series fhirlock does not export:\n{}",
        failing(&selectors).join("\n")
    );
    for a in &alerts {
        assert!(selectors.iter().any(|s| s["rule"] == a.as_str()), "{a}");
    }
    // The tests' input series are metrics fhirlock exports, with their labels.
    let (inputs, ok) = alert_check_run(&[Path::new("inputs"), &tests, &page]);
    assert!(ok && !inputs.is_empty(), "{}", failing(&inputs).join("\n"));

    // The unit tests pass, and each alert has a history where it fires and one where it must not.
    let (cases, ok) = alert_check_run(&[Path::new("test"), &rules, &tests]);
    assert!(
        ok,
        "deploy/helm/alerts_test.yaml fails:\n{}",
        failing(&cases).join("\n")
    );
    let fires = |c: &&Value| !c["want"].as_array().unwrap().is_empty();
    for a in &alerts {
        let of = |c: &&Value| c["alertname"] == a.as_str();
        assert!(
            cases.iter().filter(of).any(|c| fires(&c)),
            "{a}: no case where it fires"
        );
        assert!(
            cases.iter().filter(of).any(|c| !fires(&c)),
            "{a}: no case where it must not"
        );
    }

    // The checks can fail. With no alert expected, every case where an alert fires fails.
    let mut quiet: Value = serde_yaml::from_str(&std::fs::read_to_string(&tests).unwrap()).unwrap();
    for t in quiet["tests"].as_array_mut().unwrap() {
        for c in t["alert_rule_test"].as_array_mut().unwrap() {
            c["exp_alerts"] = json!([]);
        }
    }
    let quiet = write("quiet_test.yaml", &serde_yaml::to_string(&quiet).unwrap());
    let (got, ok) = alert_check_run(&[Path::new("test"), &rules, &quiet]);
    assert!(!ok);
    assert_eq!(
        case_ids(got.iter().filter(|c| c["ok"] != true)),
        case_ids(cases.iter().filter(fires))
    );
    // With every alert firing at once, every case where one must not fire fails.
    let mut loud = rule.clone();
    for g in loud["spec"]["groups"].as_array_mut().unwrap() {
        for r in g["rules"].as_array_mut().unwrap() {
            r["expr"] = json!("vector(1)");
            r["for"] = json!("0s");
        }
    }
    let loud = write("loud.yaml", &serde_yaml::to_string(&loud).unwrap());
    let (got, ok) = alert_check_run(&[Path::new("test"), &loud, &tests]);
    assert!(!ok);
    let quiet_cases = case_ids(cases.iter().filter(|c| !fires(c)));
    let failed = case_ids(got.iter().filter(|c| c["ok"] != true));
    assert!(
        quiet_cases.iter().all(|c| failed.contains(c)),
        "{quiet_cases:?} should all fail: {failed:?}"
    );
    // A metric fhirlock does not export is caught, in a rule and in a test's input.
    let misspelt = rule.to_string().replace("fhirlock_", "fhirlock_missing_");
    let misspelt = write("misspelt.yaml", &misspelt);
    let (got, ok) = alert_check_run(&[Path::new("selectors"), &misspelt, &page]);
    assert!(!ok && got.iter().all(|s| s["matches"] == 0), "{got:?}");
    let inputs_misspelt = std::fs::read_to_string(&tests).unwrap().replacen(
        "series: 'fhirlock_",
        "series: 'fhirlock_missing_",
        1,
    );
    let inputs_misspelt = write("inputs_test.yaml", &inputs_misspelt);
    let (got, ok) = alert_check_run(&[Path::new("inputs"), &inputs_misspelt, &page]);
    assert!(!ok && failing(&got).len() == 1, "{got:?}");
}

/// GitHub's anchor for a Markdown heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of docs/operations.md's headings, each with the text of its section.
fn runbook_sections() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut fenced = false;
    for line in doc.lines() {
        fenced ^= line.starts_with("```");
        if !fenced && line.starts_with('#') {
            sections.extend(current.take());
            current = Some((anchor(line.trim_start_matches('#')), String::new()));
        } else if let Some((_, body)) = &mut current {
            body.push_str(line);
            body.push('\n');
        }
    }
    sections.extend(current);
    sections
}

/// The PrometheusRule's (alert, runbook_url) pairs, rendered with the full values and `extra`.
fn runbook_urls(extra: &[&str]) -> Vec<(String, String)> {
    let full = chart().join("ci/full-values.yaml");
    let mut args = vec!["-f", full.to_str().unwrap()];
    args.extend(extra);
    let objs = docs(&helm_template(&args));
    let rule = find(&objs, "PrometheusRule", "fhirlock");
    rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["annotations"]["runbook_url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_alert_links_to_its_runbook_in_operations_md() {
    let sections = runbook_sections();
    // The default links to this repository's docs/operations.md (Cargo.toml's `repository`).
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let repo = manifest
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .unwrap()
        .trim_matches('"');
    let base = format!("{repo}/blob/main/docs/operations.md#");
    let urls = runbook_urls(&[]);
    assert_eq!(urls.len(), 6, "{urls:?}");
    for (alert, url) in &urls {
        let Some(fragment) = url.strip_prefix(&base) else {
            panic!("{alert}: runbook_url {url:?} is not a section of {base}");
        };
        let body = sections.get(fragment).unwrap_or_else(|| {
            panic!("{alert}: docs/operations.md has no heading with anchor #{fragment}")
        });
        // A runbook, not a bare heading: steps to follow.
        assert!(
            body.lines().filter(|l| l.starts_with("1. ")).count() == 1 && body.len() > 400,
            "{alert}: the section #{fragment} has no numbered steps:\n{body}"
        );
        // A release without cleanup is the last step of the stuck-deletion runbook: it links there.
        let own = match alert.as_str() {
            "FhirlockFinalizerReleasedWithoutCleanup" => "a-securedfhirendpoint-is-stuck-deleting",
            _ => &alert.to_lowercase(),
        };
        assert_eq!(fragment, own, "the alert's own runbook section");
    }
    // The check can fail: an anchor no heading has is not found, and the anchor rule is GitHub's.
    assert!(!sections.contains_key("fhirlockendpointnotready-typo"));
    assert_eq!(
        anchor(" Tenancy: who may touch what, as whom"),
        "tenancy-who-may-touch-what-as-whom"
    );
    assert!(sections.contains_key("tenancy-who-may-touch-what-as-whom"));
    // Published elsewhere (an internal mirror): the same anchors under that base.
    let mirror = "https://git.example.nhs.uk/platform/fhirlock/-/blob/v0.1.0/docs/operations.md";
    let moved = runbook_urls(&[
        "--set",
        &format!("metrics.prometheusRule.runbookBaseUrl={mirror}"),
    ]);
    for ((alert, url), (_, default)) in moved.iter().zip(&urls) {
        assert_eq!(
            url,
            &default.replace(base.trim_end_matches('#'), mirror),
            "{alert}"
        );
    }
}
