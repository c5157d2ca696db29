//! ARM errors and their classes. [`classify`] is a pure function of (status, headers, body), so the
//! whole mapping is tested by a table; nothing here does I/O.

use serde_json::Value;
use std::fmt;
use std::time::Duration;

use crate::headers::{Headers, header, retry_after};

/// What the caller should do about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorClass {
    /// 5xx, a dropped connection, a timeout: back off (honour `retry_after`) and try again.
    Transient,
    /// 429: the subscription's (or RP's) budget is spent; wait `retry_after`, slow down.
    Throttled,
    /// Another operation holds the resource (409 `AnotherOperationInProgress`, 412
    /// `PreconditionFailed`): re-read, then retry after the other operation ends.
    Conflict,
    /// The request itself is wrong (400, 404 on a write, validation): do not retry until the
    /// desired state changes.
    Terminal,
    /// The identity cannot get a token, or ARM rejects it (401/403): fix the credential or the
    /// role assignment.
    Auth,
}

impl ErrorClass {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Throttled => "throttled",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Terminal => "terminal",
            ErrorClass::Auth => "auth",
        }
    }

    /// Whether retrying the same request later may succeed without a change of spec or identity.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ErrorClass::Transient | ErrorClass::Throttled | ErrorClass::Conflict
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ARM (or token endpoint, or connection) failure, classified. Never carries a token, secret
/// or client assertion: messages come from ARM's error envelope or from fixed texts.
#[derive(Clone, Debug, PartialEq)]
pub struct ArmError {
    pub class: ErrorClass,
    /// HTTP status; `None` when no response arrived (connection dropped, timeout, token failure
    /// before the ARM request).
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// `x-ms-request-id` of the failed response, for support tickets.
    pub request_id: Option<String>,
}

impl ArmError {
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        ArmError {
            class,
            status: None,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            request_id: None,
        }
    }

    /// The token exchange or the credential failed.
    pub fn auth(code: impl Into<String>, message: impl Into<String>) -> Self {
        ArmError::new(ErrorClass::Auth, code, message)
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

impl fmt::Display for ArmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ARM {} error", self.class)?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        write!(f, " {}: {}", self.code, self.message)?;
        if let Some(r) = self.retry_after {
            write!(f, "; retry after {}s", r.as_secs())?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ArmError {}

/// Codes that mean "another operation holds this resource; try again once it ends".
const CONFLICT_CODES: &[&str] = &[
    "AnotherOperationInProgress",
    "PreconditionFailed",
    "OperationNotAllowedOnResourceInTransitioningState",
    "ResourceGroupBeingDeleted",
    "ConflictingOperationInProgress",
];

/// Codes that mean the identity is not allowed or its token is not accepted.
const AUTH_CODES: &[&str] = &[
    "AuthenticationFailed",
    "InvalidAuthenticationToken",
    "InvalidAuthenticationTokenAudience",
    "InvalidAuthenticationTokenTenant",
    "ExpiredAuthenticationToken",
    "AuthorizationFailed",
    "LinkedAuthorizationFailed",
];

/// Codes (in an error envelope or a failed operation) that are worth retrying as they are.
const TRANSIENT_CODES: &[&str] = &[
    "InternalServerError",
    "ServiceUnavailable",
    "GatewayTimeout",
    "ServerTimeout",
    "RetryableError",
    "RetryableErrorDueToAnotherOperation",
    "OperationPreempted",
    "Canceled",
    "Cancelled",
];

/// Classifies an error code alone (used for failed long-running operations, whose status body
/// carries a code but no HTTP status of its own).
pub fn class_of_code(code: &str) -> ErrorClass {
    if CONFLICT_CODES.iter().any(|c| c.eq_ignore_ascii_case(code)) {
        ErrorClass::Conflict
    } else if AUTH_CODES.iter().any(|c| c.eq_ignore_ascii_case(code)) {
        ErrorClass::Auth
    } else if code.eq_ignore_ascii_case("SubscriptionRequestsThrottled")
        || code.eq_ignore_ascii_case("TooManyRequests")
    {
        ErrorClass::Throttled
    } else if TRANSIENT_CODES.iter().any(|c| c.eq_ignore_ascii_case(code)) {
        ErrorClass::Transient
    } else {
        ErrorClass::Terminal
    }
}

/// `(code, message)` from an ARM error envelope `{"error":{"code","message"}}`, also tolerating
/// the bare `{"code","message"}` some RPs send. Empty strings when absent.
pub fn error_envelope(body: &[u8]) -> (String, String) {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return (String::new(), String::new()),
    };
    let e = match v.get("error") {
        Some(e) if e.is_object() => e,
        _ => &v,
    };
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    (s("code"), s("message"))
}

/// Classifies a non-success ARM response. Pure: the same inputs always give the same error.
///
/// * 429 → Throttled; 5xx (and 408) → Transient;
/// * 409/412 → Conflict when the code says another operation holds the resource (or when 412
///   has no code); other 409s (e.g. `InUseSubnetCannotBeDeleted`) → Terminal;
/// * 401/403 → Auth;
/// * 400, 404 and the rest → Terminal (a `Retry-After` on a 4xx is still reported).
pub fn classify(status: u16, headers: &Headers, body: &[u8]) -> ArmError {
    let (mut code, mut message) = error_envelope(body);
    if code.is_empty() {
        code = default_code(status).to_string();
    }
    if message.is_empty() {
        message = format!("HTTP {status} without an error message");
    }
    let class = match status {
        429 => ErrorClass::Throttled,
        408 => ErrorClass::Transient,
        500..=599 => ErrorClass::Transient,
        401 | 403 => ErrorClass::Auth,
        409 | 412 => {
            if class_of_code(&code) == ErrorClass::Conflict
                || (status == 412 && code == default_code(412))
            {
                ErrorClass::Conflict
            } else if class_of_code(&code) == ErrorClass::Transient {
                ErrorClass::Transient
            } else {
                ErrorClass::Terminal
            }
        }
        _ => ErrorClass::Terminal,
    };
    ArmError {
        class,
        status: Some(status),
        code,
        message,
        retry_after: retry_after(headers),
        request_id: header(headers, "x-ms-request-id").map(str::to_string),
    }
}

fn default_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        408 => "RequestTimeout",
        409 => "Conflict",
        412 => "PreconditionFailed",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "HttpError",
    }
}

/// Whether a 401 means "get a fresh token and try once more" (the token expired or was not
/// accepted), as opposed to a permanent rejection.
pub fn wants_token_refresh(err: &ArmError) -> bool {
    err.status == Some(401)
        && (err.code.eq_ignore_ascii_case("ExpiredAuthenticationToken")
            || err.code.eq_ignore_ascii_case("InvalidAuthenticationToken"))
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

    fn env(code: &str) -> Vec<u8> {
        serde_json::json!({"error":{"code":code,"message":format!("{code} happened"),"details":[]}})
            .to_string()
            .into_bytes()
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn classification_table() {
        use ErrorClass::*;
        let cases: &[(u16, &[(&str, &str)], Vec<u8>, ErrorClass, &str, Option<u64>)] = &[
            (
                429,
                &[("retry-after", "17")],
                env("SubscriptionRequestsThrottled"),
                Throttled,
                "SubscriptionRequestsThrottled",
                Some(17),
            ),
            (429, &[], vec![], Throttled, "TooManyRequests", None),
            (
                500,
                &[],
                env("InternalServerError"),
                Transient,
                "InternalServerError",
                None,
            ),
            (
                503,
                &[("Retry-After", "5")],
                env("ServiceUnavailable"),
                Transient,
                "ServiceUnavailable",
                Some(5),
            ),
            (
                502,
                &[],
                b"<html>bad gateway</html>".to_vec(),
                Transient,
                "BadGateway",
                None,
            ),
            (504, &[], vec![], Transient, "GatewayTimeout", None),
            (408, &[], vec![], Transient, "RequestTimeout", None),
            (
                409,
                &[],
                env("AnotherOperationInProgress"),
                Conflict,
                "AnotherOperationInProgress",
                None,
            ),
            (
                412,
                &[],
                env("PreconditionFailed"),
                Conflict,
                "PreconditionFailed",
                None,
            ),
            (412, &[], vec![], Conflict, "PreconditionFailed", None),
            (
                409,
                &[],
                env("InUseSubnetCannotBeDeleted"),
                Terminal,
                "InUseSubnetCannotBeDeleted",
                None,
            ),
            (
                409,
                &[],
                env("RetryableErrorDueToAnotherOperation"),
                Transient,
                "RetryableErrorDueToAnotherOperation",
                None,
            ),
            (
                401,
                &[],
                env("ExpiredAuthenticationToken"),
                Auth,
                "ExpiredAuthenticationToken",
                None,
            ),
            (
                401,
                &[],
                env("InvalidAuthenticationToken"),
                Auth,
                "InvalidAuthenticationToken",
                None,
            ),
            (401, &[], vec![], Auth, "Unauthorized", None),
            (
                403,
                &[],
                env("AuthorizationFailed"),
                Auth,
                "AuthorizationFailed",
                None,
            ),
            (
                400,
                &[],
                env("NetcfgSubnetRangesOverlap"),
                Terminal,
                "NetcfgSubnetRangesOverlap",
                None,
            ),
            (
                400,
                &[],
                env("NoRegisteredProviderFound"),
                Terminal,
                "NoRegisteredProviderFound",
                None,
            ),
            (
                404,
                &[],
                env("ResourceNotFound"),
                Terminal,
                "ResourceNotFound",
                None,
            ),
            (
                404,
                &[],
                env("ResourceGroupNotFound"),
                Terminal,
                "ResourceGroupNotFound",
                None,
            ),
            (
                400,
                &[("retry-after", "3")],
                b"{\"code\":\"BadRequest\",\"message\":\"bare envelope\"}".to_vec(),
                Terminal,
                "BadRequest",
                Some(3),
            ),
        ];
        for (status, hdrs, body, class, code, ra) in cases {
            let e = classify(*status, &h(hdrs), body);
            assert_eq!(e.class, *class, "{status} {code}");
            assert_eq!(e.code, *code, "{status}");
            assert_eq!(e.status, Some(*status));
            assert_eq!(
                e.retry_after,
                ra.map(Duration::from_secs),
                "{status} {code}"
            );
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn request_id_and_message_are_kept() {
        let e = classify(
            409,
            &h(&[("x-ms-request-id", "abc-123")]),
            &env("AnotherOperationInProgress"),
        );
        assert_eq!(e.request_id.as_deref(), Some("abc-123"));
        assert_eq!(e.message, "AnotherOperationInProgress happened");
        let text = e.to_string();
        assert!(
            text.contains("conflict") && text.contains("abc-123"),
            "{text}"
        );
    }

    #[test]
    fn code_classes_for_failed_operations() {
        use ErrorClass::*;
        for (code, class) in [
            ("AnotherOperationInProgress", Conflict),
            ("InternalServerError", Transient),
            ("Canceled", Transient),
            ("SubscriptionRequestsThrottled", Throttled),
            ("AuthorizationFailed", Auth),
            ("NetcfgSubnetRangeOutsideVnet", Terminal),
            ("", Terminal),
        ] {
            assert_eq!(class_of_code(code), class, "{code}");
        }
    }

    #[test]
    fn token_refresh_only_for_expired_or_invalid_tokens() {
        let e = |s, c| classify(s, &Vec::new(), &env(c));
        assert!(wants_token_refresh(&e(401, "ExpiredAuthenticationToken")));
        assert!(wants_token_refresh(&e(401, "InvalidAuthenticationToken")));
        assert!(!wants_token_refresh(&e(
            401,
            "InvalidAuthenticationTokenAudience"
        )));
        assert!(!wants_token_refresh(&e(403, "AuthorizationFailed")));
    }
}
