//! The listener certificate from the TLS Secret, judged before fhirlock uploads it: does it cover
//! `spec.gateway.hostName`, and when does it expire. Pure: the caller parses the certificate and
//! passes its DNS names, its `notAfter` and the time as values.
//!
//! Host-name matching follows RFC 6125 §6.4 (and RFC 9525 §6.3, which replaces it): DNS names
//! compare without case and without a trailing dot; a wildcard is only the whole leftmost label
//! and stands for exactly one label, so `*.trust.nhs.uk` covers `fhir.trust.nhs.uk` but neither
//! `trust.nhs.uk` nor `a.fhir.trust.nhs.uk`. Partial-label wildcards (`f*.trust.nhs.uk`) are not
//! matched (RFC 9525 forbids it), and the subject's common name is not used when looking for the
//! host: browsers ignore it, and RFC 6125 §6.4.4 allows it only without any DNS name.

/// A Warning Event and the `FhirlockCertificateExpiresSoon` alert start this many days before
/// the certificate's `notAfter`.
pub const EXPIRY_WARNING_DAYS: i64 = 21;

const DAY: i64 = 86_400;

/// When the certificate stops being valid, as seen at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// The certificate's `notAfter`, Unix seconds.
    pub not_after: i64,
    /// `not_after - now`: negative once it has expired.
    pub seconds_left: i64,
}

impl Expiry {
    /// Whole days left, rounded down (-1 on the day after it expired).
    pub fn days_left(&self) -> i64 {
        self.seconds_left.div_euclid(DAY)
    }

    /// `notAfter` as RFC 3339 (UTC), as status shows it.
    pub fn not_after_rfc3339(&self) -> String {
        k8s_openapi::jiff::Timestamp::from_second(self.not_after)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| self.not_after.to_string())
    }

    /// Within [`EXPIRY_WARNING_DAYS`] of `notAfter`, or past it.
    pub fn expires_soon(&self) -> bool {
        self.seconds_left <= EXPIRY_WARNING_DAYS * DAY
    }

    /// The text of the `CertificateExpiresSoon` Warning, when one is due.
    pub fn warning(&self, secret: &str) -> Option<String> {
        if !self.expires_soon() {
            return None;
        }
        let when = if self.seconds_left <= 0 {
            "has expired: clients on the private network are refused".to_owned()
        } else {
            match self.days_left() {
                0 => "expires in less than a day".to_owned(),
                1 => "expires in 1 day".to_owned(),
                d => format!("expires in {d} days"),
            }
        };
        Some(format!(
            "the listener certificate from {secret} {when} (notAfter {}): renew it in the Secret (cert-manager renews a 90-day certificate 30 days before it ends by default) and fhirlock uploads it",
            self.not_after_rfc3339()
        ))
    }
}

/// Why the certificate cannot be used; nothing is written to Azure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateStall {
    /// The Stalled condition's reason.
    pub reason: &'static str,
    pub message: String,
}

/// The certificate's DNS names (`sans`) must cover `host`; then its expiry as of `now` (both
/// Unix seconds). An expired certificate is not a stall: refusing it would also hold back the
/// lockdown of every back door, while the Warning Event and the alert say what to do.
pub fn check_certificate(
    host: &str,
    sans: &[String],
    not_after: i64,
    now: i64,
) -> Result<Expiry, CertificateStall> {
    if !sans.iter().any(|san| name_matches(san, host)) {
        let names = if sans.is_empty() {
            "no DNS name (subjectAltName); the subject's common name does not count".to_owned()
        } else {
            format!("only {}", sans.join(", "))
        };
        return Err(CertificateStall {
            reason: "CertificateHostMismatch",
            message: format!(
                "the certificate covers {names}, not spec.gateway.hostName {host}: clients would refuse the listener. Issue one whose subjectAltName has {host} (a wildcard covers one leftmost label only)"
            ),
        });
    }
    Ok(Expiry {
        not_after,
        seconds_left: not_after.saturating_sub(now),
    })
}

/// Whether the certificate's DNS name `pattern` covers `host` (RFC 6125 §6.4.3, see the module).
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let (pattern, host) = (norm(pattern), norm(host));
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        // Two labels at least after the wildcard: `*.uk` would cover a whole public suffix.
        Some(rest) if rest.split('.').count() >= 2 && !rest.contains('*') => host
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        Some(_) => false,
        None => !pattern.contains('*') && pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_match_as_rfc_6125_says() {
        let table = [
            ("fhir.trust.nhs.uk", "fhir.trust.nhs.uk", true),
            ("FHIR.Trust.NHS.uk", "fhir.trust.nhs.uk", true),
            ("fhir.trust.nhs.uk.", "fhir.trust.nhs.uk", true),
            ("fhir.trust.nhs.uk", "fhir.trust.nhs.uk.", true),
            ("*.trust.nhs.uk", "fhir.trust.nhs.uk", true),
            ("*.TRUST.nhs.uk", "Fhir.trust.nhs.uk", true),
            // One label, the leftmost, and never none.
            ("*.trust.nhs.uk", "trust.nhs.uk", false),
            ("*.trust.nhs.uk", "a.fhir.trust.nhs.uk", false),
            ("*.nhs.uk", "fhir.trust.nhs.uk", false),
            ("*.trust.nhs.uk", ".trust.nhs.uk", false),
            ("fhir.*.nhs.uk", "fhir.trust.nhs.uk", false),
            ("*.*.nhs.uk", "fhir.trust.nhs.uk", false),
            // Partial-label wildcards are not matched (RFC 9525 §6.3).
            ("f*.trust.nhs.uk", "fhir.trust.nhs.uk", false),
            ("*hir.trust.nhs.uk", "fhir.trust.nhs.uk", false),
            // A wildcard over a public suffix covers nothing.
            ("*.uk", "nhs.uk", false),
            ("*", "localhost", false),
            ("other.trust.nhs.uk", "fhir.trust.nhs.uk", false),
            ("fhir.trust.nhs.uk.evil", "fhir.trust.nhs.uk", false),
            ("", "fhir.trust.nhs.uk", false),
        ];
        for (pattern, host, want) in table {
            assert_eq!(name_matches(pattern, host), want, "{pattern} for {host}");
        }
    }

    #[test]
    fn a_certificate_that_does_not_cover_the_host_stalls_naming_both() {
        let now = 1_800_000_000;
        let sans = vec!["other.trust.nhs.uk".to_owned(), "*.fhir.nhs.uk".to_owned()];
        let err = check_certificate("fhir.trust.nhs.uk", &sans, now + 90 * DAY, now).unwrap_err();
        assert_eq!(err.reason, "CertificateHostMismatch");
        for part in [
            "fhir.trust.nhs.uk",
            "other.trust.nhs.uk, *.fhir.nhs.uk",
            "subjectAltName",
        ] {
            assert!(err.message.contains(part), "{part}: {}", err.message);
        }
        let none = check_certificate("fhir.trust.nhs.uk", &[], now, now).unwrap_err();
        assert!(none.message.contains("no DNS name"), "{}", none.message);
        // Another name beside the host's is fine.
        let ok = check_certificate(
            "fhir.trust.nhs.uk",
            &["other.trust.nhs.uk".into(), "*.trust.nhs.uk".into()],
            now + DAY,
            now,
        );
        assert_eq!(
            ok,
            Ok(Expiry {
                not_after: now + DAY,
                seconds_left: DAY
            })
        );
    }

    #[test]
    fn the_warning_starts_21_days_before_not_after_and_goes_on_once_expired() {
        let now = 1_800_000_000;
        let sans = ["fhir.trust.nhs.uk".to_owned()];
        let at =
            |left: i64| check_certificate("fhir.trust.nhs.uk", &sans, now + left, now).unwrap();
        let table: [(i64, i64, Option<&str>); 8] = [
            (90 * DAY, 90, None),
            (21 * DAY + 1, 21, None),
            (21 * DAY, 21, Some("expires in 21 days")),
            (2 * DAY + 5, 2, Some("expires in 2 days")),
            (DAY, 1, Some("expires in 1 day")),
            (60, 0, Some("expires in less than a day")),
            (0, 0, Some("has expired")),
            (-3 * DAY, -3, Some("has expired")),
        ];
        for (left, days, text) in table {
            let e = at(left);
            assert_eq!(e.days_left(), days, "{left}");
            assert_eq!(e.expires_soon(), text.is_some(), "{left}");
            let w = e.warning("Secret fhir/fhir-tls");
            match text {
                None => assert_eq!(w, None, "{left}"),
                Some(t) => {
                    let w = w.unwrap();
                    assert!(w.contains(t) && w.contains("Secret fhir/fhir-tls"), "{w}");
                }
            }
        }
    }
}
