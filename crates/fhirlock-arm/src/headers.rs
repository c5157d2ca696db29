//! Response headers as plain `(name, value)` pairs, so that the pure functions (error
//! classification, LRO parsing, budget) can be tested without an HTTP stack.

use std::time::Duration;

/// Response headers; names compare case-insensitively.
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The longest wait fhirlock takes from a server. ARM's throttling windows are at most an hour
/// (Microsoft Learn, "Understand how Azure Resource Manager throttles requests"); a larger figure
/// is a broken or hostile answer, and would overflow the clock arithmetic after it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The server's requested wait, at most [`MAX_RETRY_AFTER`]: `x-ms-retry-after-ms` /
/// `retry-after-ms` (milliseconds) win over `Retry-After` (integer seconds, as ARM sends it). An
/// HTTP-date or garbage is ignored.
pub fn retry_after(headers: &Headers) -> Option<Duration> {
    for name in ["x-ms-retry-after-ms", "retry-after-ms"] {
        if let Some(ms) = header(headers, name).and_then(whole_number) {
            return Some(Duration::from_millis(
                ms.min(MAX_RETRY_AFTER.as_millis()) as u64
            ));
        }
    }
    header(headers, "retry-after")
        .and_then(whole_number)
        .map(|s| Duration::from_secs(s.min(MAX_RETRY_AFTER.as_secs().into()) as u64))
}

/// A non-negative integer of any length, saturated.
fn whole_number(v: &str) -> Option<u128> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u128>().unwrap_or(u128::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn retry_after_table() {
        let cases: &[(&[(&str, &str)], Option<Duration>)] = &[
            (&[], None),
            (&[("Retry-After", "10")], Some(Duration::from_secs(10))),
            (&[("retry-after", " 0 ")], Some(Duration::ZERO)),
            (&[("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")], None),
            (&[("Retry-After", "-1")], None),
            (
                &[("Retry-After", "10"), ("x-ms-retry-after-ms", "250")],
                Some(Duration::from_millis(250)),
            ),
            (
                &[("retry-after-ms", "1500")],
                Some(Duration::from_millis(1500)),
            ),
            // Larger than any clock can add: clamped, not a panic later.
            (
                &[("Retry-After", "10000000000000000000")],
                Some(MAX_RETRY_AFTER),
            ),
            (
                &[("Retry-After", "999999999999999999999999999999999999999999")],
                Some(MAX_RETRY_AFTER),
            ),
            (
                &[("x-ms-retry-after-ms", "18446744073709551615")],
                Some(MAX_RETRY_AFTER),
            ),
            (&[("Retry-After", "3601")], Some(MAX_RETRY_AFTER)),
            (&[("Retry-After", "+5")], None),
        ];
        for (hdrs, want) in cases {
            assert_eq!(retry_after(&h(hdrs)), *want, "{hdrs:?}");
        }
    }

    #[test]
    fn header_lookup_ignores_case() {
        let hs = h(&[("X-Ms-Request-Id", "r1")]);
        assert_eq!(header(&hs, "x-ms-request-id"), Some("r1"));
        assert_eq!(header(&hs, "location"), None);
    }
}
