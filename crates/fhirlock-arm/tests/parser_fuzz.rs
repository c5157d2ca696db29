//! Fuzzing the pure ARM response parsers (`classify`, `error_envelope`, `poll_outcome`,
//! `write_outcome`, `RateLimitHeaders::parse`) over mutated real-shaped answers: truncated bodies,
//! flipped types, dropped and duplicated keys, huge numbers, unicode, invalid UTF-8, garbage
//! headers. They must never panic, and the class of an error must follow its HTTP status whatever
//! the body says. Beyond that: a 404 on an operation's status URL (`OperationNotFound`) is a
//! not-found poll error, never "still running"; and every wait a header asks for (`Retry-After`
//! of 1e19, negative, an HTTP date far in the future) is a bounded `Duration`, the next poll
//! within ten minutes.
//!
//! `cargo fuzz` needs a nightly toolchain and `cargo-fuzz`, which `make test` cannot assume, so this
//! is a seeded mutation loop on stable: 4,000 cases per parser here, 200,000 with `FHIRLOCK_SOAK=1`.
//! A failure prints the seed; `FHIRLOCK_SEED=<seed>` replays it.

use std::time::Duration;

use fhirlock_arm::{
    ErrorClass, Headers, Operation, OperationKind, OperationStatus, RateLimitHeaders, Url,
    WriteOutcome, classify, error_envelope, poll_outcome, retry_after, write_outcome,
};
use fhirlock_testkit::Rng;
use serde_json::{Value, json};

fn cases() -> usize {
    if std::env::var("FHIRLOCK_SOAK").is_ok_and(|v| v == "1") {
        200_000
    } else {
        4_000
    }
}

const ARM: &str = "https://management.azure.com";

/// The longest wait any header may impose (`fhirlock_arm::headers::MAX_RETRY_AFTER`), and the
/// longest between two polls of an operation (`Operation::next_poll_in`).
const MAX_WAIT: Duration = Duration::from_secs(3600);
const MAX_POLL: Duration = Duration::from_secs(600);

/// Answers ARM, Entra and the RPs really send (ARM reference §1, §4, §5).
fn corpus() -> Vec<Value> {
    vec![
        json!({"error": {"code": "AnotherOperationInProgress", "message": "Another operation on this or dependent resource is in progress. To retrieve status of the operation use uri: https://management.azure.com/subscriptions/s/providers/Microsoft.Network/locations/uksouth/operations/1?api-version=2025-01-01.", "details": []}}),
        json!({"error": {"code": "PreconditionFailed", "message": "There is already an operation in progress which requires exclusive lock on this service fhir-cosmos."}}),
        json!({"error": {"code": "SubscriptionRequestsThrottled", "message": "Number of 'read' requests for subscription exceeded the limit."}}),
        json!({"error": {"code": "ExpiredAuthenticationToken", "message": "The access token expiry UTC time is earlier than current UTC time."}}),
        json!({"error": {"code": "InUseSubnetCannotBeDeleted", "message": "Subnet snet is in use", "details": [{"code": "x", "message": "y"}]}}),
        json!({"code": "BadRequest", "message": "bare envelope from an RP"}),
        json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]}),
        json!({"id": "/subscriptions/s/providers/Microsoft.Network/locations/uksouth/operations/1", "name": "1", "status": "InProgress", "startTime": "2026-01-01T00:00:00Z", "percentComplete": 40}),
        json!({"status": "Succeeded", "endTime": "2026-01-01T00:05:00Z"}),
        json!({"status": "Failed", "error": {"code": "InternalServerError", "message": "An error occurred."}}),
        json!({"status": "Canceled"}),
        json!({"id": "/subscriptions/s/resourceGroups/fhir/providers/Microsoft.Network/applicationGateways/agw", "name": "agw", "etag": "W/\"1\"", "properties": {"provisioningState": "Updating", "operationalState": "Starting"}}),
        json!({"properties": {"provisioningState": "Failed"}}),
        json!({"properties": {"provisioningState": "Succeeded", "subnets": [{"name": "a", "properties": {"addressPrefix": "10.0.0.0/24"}}]}}),
        json!({"value": [], "nextLink": "https://management.azure.com/x?$skiptoken=1"}),
        json!({"error": {"code": "OperationNotFound", "message": "The operation '1' could not be found."}}),
    ]
}

fn headers_corpus(status_url: &str) -> Vec<Headers> {
    let h = |v: &[(&str, &str)]| -> Headers {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    vec![
        h(&[]),
        h(&[
            ("Azure-AsyncOperation", status_url),
            ("Retry-After", "10"),
            ("x-ms-ratelimit-remaining-subscription-writes", "199"),
        ]),
        h(&[("Location", status_url), ("Retry-After", "0")]),
        h(&[
            ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("x-ms-ratelimit-remaining-subscription-reads", "11999"),
        ]),
        h(&[
            ("x-ms-retry-after-ms", "1500"),
            ("x-ms-ratelimit-remaining-subscription-deletes", "14999"),
        ]),
    ]
}

/// A replacement of any JSON type, including the awkward ones.
fn weird(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(1e308),
        5 => json!(-0.0),
        6 => json!(""),
        7 => json!("Succeeded\u{0}\u{202e}ñ😀"),
        8 => json!([]),
        9 => json!({}),
        10 => json!("https://evil.example/steal?token=1"),
        _ => json!([[[[[[{"status": "Failed"}]]]]]]),
    }
}

/// One structural mutation somewhere in `v`: flip a type, drop a key, add one, or recurse.
fn mutate(v: &mut Value, rng: &mut Rng, depth: usize) {
    match v {
        Value::Object(m) if !m.is_empty() && depth < 6 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            match rng.below(4) {
                0 => *m.get_mut(&k).unwrap() = weird(rng),
                1 => {
                    m.remove(&k);
                }
                2 => {
                    let w = weird(rng);
                    m.insert(
                        rng.pick(&["status", "error", "code", "properties", "x-new"])
                            .to_string(),
                        w,
                    );
                }
                _ => mutate(m.get_mut(&k).unwrap(), rng, depth + 1),
            }
        }
        Value::Array(a) if !a.is_empty() && depth < 6 => {
            let i = rng.below(a.len());
            if rng.below(2) == 0 {
                a[i] = weird(rng);
            } else {
                mutate(&mut a[i], rng, depth + 1);
            }
        }
        _ => *v = weird(rng),
    }
}

/// A mutated body as bytes: structural mutations, then perhaps byte-level damage.
fn body(rng: &mut Rng) -> Vec<u8> {
    let mut v = rng.pick(&corpus()).clone();
    for _ in 0..rng.below(4) {
        mutate(&mut v, rng, 0);
    }
    let mut b = serde_json::to_vec(&v).unwrap();
    match rng.below(8) {
        0 => b.truncate(rng.below(b.len() + 1)),
        1 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
        }
        2 => {
            // A duplicated key: serde_json keeps the last one; whatever it keeps, no panic.
            let s = String::from_utf8_lossy(&b).replacen('{', "{\"status\":\"Failed\",", 1);
            b = s.into_bytes();
        }
        3 => b.splice(0..0, [0xEF, 0xBB, 0xBF]).for_each(drop),
        4 => b.extend_from_slice(&[0xff, 0xfe, 0x00]),
        5 => b = "[".repeat(10_000).into_bytes(),
        _ => {}
    }
    b
}

fn headers(rng: &mut Rng) -> Headers {
    let url = rng
        .pick(&[
            format!("{ARM}/subscriptions/s/providers/Microsoft.Network/locations/uksouth/operations/1?api-version=2025-01-01"),
            "/relative/operations/2".to_owned(),
            "https://evil.example/op".to_owned(),
            "not a url at all ✗".to_owned(),
            String::new(),
        ])
        .clone();
    let mut h = rng.pick(&headers_corpus(&url)).clone();
    for (_, v) in h.iter_mut() {
        if rng.below(4) == 0 {
            *v = rng
                .pick(&[
                    "-1",
                    "18446744073709551616",
                    "4294967296",
                    " 12 ",
                    "1e3",
                    "",
                    "١٢",
                    "NaN",
                    // Retry-After values that overflowed a Duration before the clamp.
                    "10000000000000000000",
                    "1e19",
                    "-10000000000000000000",
                    "99999999999999999999999999999999999999999",
                    "Fri, 31 Dec 9999 23:59:59 GMT",
                ])
                .to_string();
        }
    }
    h
}

fn status(rng: &mut Rng) -> u16 {
    *rng.pick(&[
        200, 201, 202, 204, 400, 401, 403, 404, 408, 409, 412, 429, 500, 502, 503, 504, 0, 999, 302,
    ])
}

/// The class an error must have, by status alone, whatever the body says.
fn expected_class(status: u16) -> Option<&'static [ErrorClass]> {
    Some(match status {
        429 => &[ErrorClass::Throttled],
        408 | 500..=599 => &[ErrorClass::Transient],
        401 | 403 => &[ErrorClass::Auth],
        // Another operation's lock, a transient code (e.g. 409 `RetryableError`), or a real refusal.
        409 | 412 => &[
            ErrorClass::Conflict,
            ErrorClass::Transient,
            ErrorClass::Terminal,
        ],
        400 | 404 => &[ErrorClass::Terminal],
        _ => return None,
    })
}

#[test]
fn classify_and_error_envelope_never_panic_and_follow_the_status() {
    let mut rng = Rng::seeded("classify");
    for _ in 0..cases() {
        let (s, h, b) = (status(&mut rng), headers(&mut rng), body(&mut rng));
        let _ = error_envelope(&b);
        let e = classify(s, &h, &b);
        if let Some(allowed) = expected_class(s) {
            assert!(
                allowed.contains(&e.class),
                "HTTP {s} classified {:?} for body {:?}",
                e.class,
                String::from_utf8_lossy(&b)
            );
        }
        assert!(!e.code.is_empty(), "an error always has a code");
    }
}

#[test]
fn poll_outcome_never_panics_and_a_failed_poll_is_classified_by_status() {
    let mut rng = Rng::seeded("poll_outcome");
    for _ in 0..cases() {
        let kind = *rng.pick(&[
            OperationKind::AsyncOperation,
            OperationKind::Location,
            OperationKind::ProvisioningState,
        ]);
        let op = Operation {
            resource_id: "/subscriptions/s/resourceGroups/fhir/providers/Microsoft.Network/applicationGateways/agw".into(),
            method: "PUT".into(),
            api_version: "2025-01-01".into(),
            status_url: format!("{ARM}/subscriptions/s/providers/Microsoft.Network/locations/uksouth/operations/1"),
            kind,
            retry_after_secs: None,
        };
        let (s, h, b) = (status(&mut rng), headers(&mut rng), body(&mut rng));
        match poll_outcome(&op, s, &h, &b) {
            Err(e) => {
                if matches!(s, 429 | 401 | 403 | 500..=599) {
                    assert_eq!(Some(e.class), expected_class(s).map(|c| c[0]), "HTTP {s}");
                }
                if s == 404 && kind != OperationKind::ProvisioningState {
                    assert!(e.is_not_found() && e.class == ErrorClass::Terminal, "{e:?}");
                }
                // Every wait a failed poll asks for is bounded, whatever the header said.
                assert!(e.retry_after.is_none_or(|d| d <= MAX_WAIT), "{e:?}");
            }
            // An operation ARM does not know: a not-found poll error, so the caller drops the
            // handle and observes, never "still running" for ever.
            Ok(got) if s == 404 && kind != OperationKind::ProvisioningState => {
                panic!("HTTP 404 on a {kind:?} status URL read as {got:?}")
            }
            Ok(OperationStatus::InProgress { retry_after }) => {
                assert!(retry_after.is_none_or(|d| d <= MAX_WAIT), "{retry_after:?}");
                let next = op.next_poll_in(retry_after);
                assert!(
                    (Duration::from_secs(1)..=MAX_POLL).contains(&next),
                    "{next:?}"
                );
                assert!(
                    !matches!(s, 429 | 401 | 403 | 500..=599),
                    "HTTP {s} was taken as an answer about the operation"
                );
            }
            Ok(OperationStatus::Failed(e)) => {
                let _ = e.class.as_str();
            }
            Ok(_) => assert!(
                !matches!(s, 429 | 401 | 403 | 500..=599),
                "HTTP {s} was taken as an answer about the operation"
            ),
        }
    }
}

#[test]
fn write_outcome_never_panics_and_only_accepts_an_operation_it_can_poll() {
    let mut rng = Rng::seeded("write_outcome");
    let request = Url::parse(&format!(
        "{ARM}/subscriptions/s/resourceGroups/fhir/providers/Microsoft.Network/applicationGateways/agw?api-version=2025-01-01"
    ))
    .unwrap();
    for _ in 0..cases() {
        let method = *rng.pick(&["PUT", "PATCH", "DELETE", "POST"]);
        let s = *rng.pick(&[200, 201, 202, 204]);
        let (h, b) = (headers(&mut rng), body(&mut rng));
        if let WriteOutcome::Accepted(op) = write_outcome(
            "/subscriptions/s/resourceGroups/fhir/providers/Microsoft.Network/applicationGateways/agw",
            method,
            "2025-01-01",
            &request,
            s,
            &h,
            &b,
        ) {
            assert!(
                Url::parse(&op.status_url).is_ok(),
                "an operation handle with an unusable status URL: {op:?}"
            );
        }
    }
}

#[test]
fn rate_limit_headers_parse_never_panics_and_reads_what_is_a_number() {
    let mut rng = Rng::seeded("rate_limit_headers");
    for _ in 0..cases() {
        let h = headers(&mut rng);
        let parsed = RateLimitHeaders::parse(&h);
        for (name, got) in [
            ("x-ms-ratelimit-remaining-subscription-reads", parsed.reads),
            (
                "x-ms-ratelimit-remaining-subscription-writes",
                parsed.writes,
            ),
            (
                "x-ms-ratelimit-remaining-subscription-deletes",
                parsed.deletes,
            ),
        ] {
            let raw = h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
            if let Some(n) = raw.and_then(|(_, v)| v.parse::<u32>().ok()) {
                assert_eq!(got, Some(n), "{name}: {raw:?}");
            }
        }
    }
}

/// `Retry-After` (and `x-ms-retry-after-ms`) of any value, 1e19 and HTTP dates far in the future
/// included: the wait is a bounded `Duration` (no overflow), a throttled error carries it, and
/// the next poll comes within ten minutes.
#[test]
fn retry_after_is_bounded_whatever_the_header_says() {
    let mut rng = Rng::seeded("retry_after");
    let values = [
        "10000000000000000000",
        "18446744073709551615",
        "18446744073709551616",
        "340282366920938463463374607431768211456",
        "1e19",
        "-1",
        "-10000000000000000000",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "3600",
        "3601",
        "0",
        " 7 ",
        "7.5",
        "",
    ];
    for _ in 0..cases() {
        let name = *rng.pick(&[
            "Retry-After",
            "retry-after",
            "x-ms-retry-after-ms",
            "retry-after-ms",
        ]);
        let value = *rng.pick(&values);
        let h: Headers = vec![(name.to_owned(), value.to_owned())];
        let got = retry_after(&h);
        assert!(
            got.is_none_or(|d| d <= MAX_WAIT),
            "{name}: {value} gave {got:?}"
        );
        if value.trim().parse::<u128>().is_ok() {
            assert!(got.is_some(), "{name}: {value} is a whole number");
        }
        let e = classify(429, &h, b"{}");
        assert_eq!((e.class, e.retry_after), (ErrorClass::Throttled, got));
        let op = Operation {
            resource_id: "/subscriptions/s/resourceGroups/fhir/providers/Microsoft.Network/applicationGateways/agw".into(),
            method: "PUT".into(),
            api_version: "2025-01-01".into(),
            status_url: format!("{ARM}/subscriptions/s/providers/Microsoft.Network/locations/uksouth/operations/1"),
            kind: OperationKind::AsyncOperation,
            retry_after_secs: got.map(|d| d.as_secs()),
        };
        for next in [op.next_poll_in(got), op.next_poll_in(None)] {
            assert!(
                (Duration::from_secs(1)..=MAX_POLL).contains(&next),
                "{value}: {next:?}"
            );
        }
    }
}
