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

/// The server's requested wait: `x-ms-retry-after-ms` / `retry-after-ms` (milliseconds) win over
/// `Retry-After` (integer seconds, as ARM sends it). An HTTP-date or garbage is ignored.
pub fn retry_after(headers: &Headers) -> Option<Duration> {
    for name in ["x-ms-retry-after-ms", "retry-after-ms"] {
        if let Some(ms) = header(headers, name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    header(headers, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
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
