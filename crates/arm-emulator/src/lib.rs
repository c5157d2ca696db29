//! arm-emulator: a local, faithful Azure Resource Manager and Microsoft Entra token endpoint over
//! HTTPS, for fhirlock's tests and demo. It shares no model code with the operator: both are
//! written from `shared/reference/azure-arm.md`, so a misunderstanding in one is caught by the other.
//!
//! Layout: pure decision logic (`body_rules`, `validate`, `enrich`, `exposure`, `throttle`, `state` LRO machine,
//! `faults`) is plain functions tested by tables; `engine` applies them to an ARM request, `entra`
//! answers the token endpoint, `control` the `/_emulator/` API; `server` is the HTTPS edge.

pub mod backend_health;
pub mod body_rules;
pub mod cidr;
pub mod client;
pub mod config;
mod control;
pub mod engine;
pub mod enrich;
mod entra;
pub mod error;
pub mod exposure;
pub mod faults;
pub mod ids;
pub mod jwt;
pub mod key_vault;
pub mod managed_identity;
pub mod requests;
pub mod server;
pub mod state;
pub mod stats;
pub mod throttle;
pub mod tls;
pub mod util;
pub mod validate;
