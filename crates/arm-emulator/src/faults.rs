//! Fault injection rules: the next N requests matching a method and path pattern misbehave.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// HTTP method to match (`*` or absent = any).
    #[serde(default)]
    pub method: Option<String>,
    /// Path pattern, case-insensitive; `*` matches any run of characters (including `/`).
    pub path: String,
    /// How many matching requests to affect (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Answer with this status (429, 500, 503, 409, 412, 401, …) instead of processing the request.
    #[serde(default)]
    pub status: Option<u16>,
    /// Error code for the body (defaults per status).
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// `Retry-After` seconds to send with the injected status.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Delay before answering (applies with or without `status`).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Close the connection without an answer.
    #[serde(default)]
    pub drop_connection: bool,
    /// With `dropConnection`: carry out the request first, then close without an answer (the
    /// write happened; the client never hears). Without it the request is dropped unprocessed.
    #[serde(default)]
    pub after_processing: bool,
    /// Accept the write, but make its long-running operation end `Failed` with this code.
    #[serde(default)]
    pub fail_lro: Option<String>,
}

fn one() -> u32 {
    1
}

/// Glob match where `*` matches anything; case-insensitive.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == t[ti] || p[pi] == '?') {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl Fault {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let m_ok = match &self.method {
            None => true,
            Some(m) => m == "*" || m.eq_ignore_ascii_case(method),
        };
        m_ok && glob(&self.path, path)
    }

    pub fn default_code(status: u16) -> &'static str {
        match status {
            429 => "SubscriptionRequestsThrottled",
            409 => "AnotherOperationInProgress",
            412 => "PreconditionFailed",
            401 => "ExpiredAuthenticationToken",
            500 => "InternalServerError",
            503 => "ServiceUnavailable",
            _ => "InjectedFault",
        }
    }
}

/// Takes the first matching rule (consuming one of its uses).
pub fn take(faults: &mut Vec<Fault>, method: &str, path: &str) -> Option<Fault> {
    let i = faults
        .iter()
        .position(|f| f.count > 0 && f.matches(method, path))?;
    let f = faults[i].clone();
    faults[i].count -= 1;
    if faults[i].count == 0 {
        faults.remove(i);
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases = [
            ("*/subnets/*", "/subscriptions/s/x/subnets/a", true),
            ("*/SUBNETS/*", "/subscriptions/s/x/subnets/a", true),
            ("*/subnets/*", "/subscriptions/s/x/sites/a", false),
            (
                "/subscriptions/*/sites/app",
                "/subscriptions/s/rg/sites/app",
                true,
            ),
            (
                "/subscriptions/*/sites/app",
                "/subscriptions/s/rg/sites/app/config/web",
                false,
            ),
            ("*", "", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn take_consumes_counted_rules_in_order() {
        let f: Fault = serde_json::from_value(
            serde_json::json!({"method":"PUT","path":"*/subnets/*","count":2,"status":429}),
        )
        .unwrap();
        let mut v = vec![f];
        assert!(take(&mut v, "GET", "/x/subnets/a").is_none());
        assert!(take(&mut v, "PUT", "/x/subnets/a").is_some());
        assert!(take(&mut v, "put", "/x/subnets/b").is_some());
        assert!(take(&mut v, "PUT", "/x/subnets/c").is_none());
        assert!(v.is_empty());
    }
}
