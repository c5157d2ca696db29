//! fhirlock-arm: a thin Azure Resource Manager transport on `azure_core` 1.x and `azure_identity`
//! 1.x. It knows ARM's transport (URLs and api-versions, long-running operations, the error
//! envelope, throttling headers, tokens) and nothing about subnets, gateways or sites.
//!
//! * [`ArmClient`]: GET / PUT / PATCH / DELETE / POST by resource id and api-version; one request
//!   per call, no sleeping, no in-pipeline retries.
//! * [`Operation`]: a serialisable handle for a long-running operation; [`ArmClient::poll`] sends
//!   exactly one request.
//! * [`ArmError`] / [`ErrorClass`]: every failure classified by the pure [`classify`].
//! * [`Budget`]: the remaining read/write/delete budget from `x-ms-ratelimit-remaining-*`.
//! * [`RequestObserver`]: a metrics hook.
//!
//! No token, secret or client assertion appears in a `Debug` output, a log line or an error.

mod budget;
mod client;
mod config;
mod credential;
mod error;
mod headers;
mod ids;
mod lro;

pub use azure_core::http::Url;
pub use budget::{Budget, RateLimitHeaders};
pub use client::{ArmClient, Precondition, RequestEvent, RequestObserver, absent_on_404};
pub use config::{ArmConfig, AssertionSource, Cloud, CredentialConfig, env};
pub use error::{
    ArmError, ErrorClass, class_of_code, classify, error_envelope, wants_token_refresh,
};
pub use headers::{Headers, header, retry_after};
pub use ids::{resource_type, subscription_of};
pub use lro::{
    DEFAULT_POLL_INTERVAL, Operation, OperationKind, OperationStatus, WriteOutcome, poll_outcome,
    write_outcome,
};
