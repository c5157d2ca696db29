//! The fault matrix: every kind of fault the emulator injects, aimed at where the operator's
//! requests go in each phase of an endpoint's life.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Throttled,
    Internal,
    Unavailable,
    Dropped,
    FailedOperation,
    Conflict409,
    Precondition412,
    ExpiredToken,
}

pub const KINDS: [Kind; 8] = [
    Kind::Throttled,
    Kind::Internal,
    Kind::Unavailable,
    Kind::Dropped,
    Kind::FailedOperation,
    Kind::Conflict409,
    Kind::Precondition412,
    Kind::ExpiredToken,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Throttled => "429",
            Kind::Internal => "500",
            Kind::Unavailable => "503",
            Kind::Dropped => "dropped-connection",
            Kind::FailedOperation => "failed-operation",
            Kind::Conflict409 => "409",
            Kind::Precondition412 => "412",
            Kind::ExpiredToken => "expired-token",
        }
    }

    pub fn of(rule: &Value) -> Kind {
        if rule["dropConnection"] == true {
            return Kind::Dropped;
        }
        if !rule["failLro"].is_null() {
            return Kind::FailedOperation;
        }
        match rule["status"].as_u64() {
            Some(429) => Kind::Throttled,
            Some(500) => Kind::Internal,
            Some(503) => Kind::Unavailable,
            Some(409) => Kind::Conflict409,
            Some(412) => Kind::Precondition412,
            Some(401) => Kind::ExpiredToken,
            _ => panic!("unknown rule {rule}"),
        }
    }

    /// The rule for this kind on `(method, path)`. A failed operation needs a write that starts
    /// one, so it takes the phase's long-running write instead.
    pub fn rule(self, method: &str, path: &str, lro: (&str, &str), count: u64) -> Value {
        let base = |m: &str, p: &str| json!({"method": m, "path": p, "count": count});
        let mut r = base(method, path);
        match self {
            Kind::Throttled => {
                r["status"] = json!(429);
                r["retryAfter"] = json!(1);
            }
            Kind::Internal => r["status"] = json!(500),
            Kind::Unavailable => {
                r["status"] = json!(503);
                r["retryAfter"] = json!(1);
            }
            Kind::Dropped => r["dropConnection"] = json!(true),
            Kind::FailedOperation => {
                r = base(lro.0, lro.1);
                r["failLro"] = json!("InternalServerError");
            }
            Kind::Conflict409 => r["status"] = json!(409),
            Kind::Precondition412 => r["status"] = json!(412),
            Kind::ExpiredToken => r["status"] = json!(401),
        }
        r
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Phase {
    Create,
    Drift,
    Update,
    Delete,
}

impl Phase {
    /// Where the operator's requests go in this phase (method, path glob), and the
    /// long-running write a failed operation is injected into.
    pub fn targets(self, ep: Ep) -> (Vec<(&'static str, String)>, (&'static str, String)) {
        let polls = ("GET", "*/operations*".to_owned());
        let gw = format!("*/applicationGateways/{}", ep.gateway_name());
        let agw = format!("*/subnets/{}", ep.agw_subnet());
        let int = format!("*/subnets/{}", ep.int_subnet());
        let site = format!("*/sites/fhir-server-{}", ep.0);
        let cfg = format!("{site}/config/web");
        let cosmos = format!("*/databaseAccounts/fhir-cosmos-{}", ep.0);
        match self {
            Phase::Create => (
                vec![
                    ("PUT", agw.clone()),
                    ("*", gw.clone()),
                    ("PATCH", cfg),
                    ("*", cosmos),
                    ("PATCH", site),
                    ("GET", "*/virtualNetworks/hscn-vnet".into()),
                    polls,
                    ("PUT", int),
                ],
                ("PUT", gw),
            ),
            Phase::Drift => (
                vec![
                    ("PATCH", cfg.clone()),
                    ("PATCH", cosmos.clone()),
                    ("PUT", agw.clone()),
                    ("GET", cfg),
                    polls,
                    ("GET", "*/virtualNetworks/hscn-vnet".into()),
                    ("GET", cosmos),
                    ("GET", agw.clone()),
                ],
                ("PUT", agw),
            ),
            Phase::Update => (
                vec![
                    ("PUT", gw.clone()),
                    ("GET", gw.clone()),
                    polls,
                    ("GET", "*/virtualNetworks/hscn-vnet".into()),
                ],
                ("PUT", gw),
            ),
            Phase::Delete => (
                vec![
                    ("DELETE", gw.clone()),
                    ("DELETE", agw),
                    ("DELETE", int),
                    ("*", format!("{site}/networkConfig/virtualNetwork")),
                    ("PATCH", cfg),
                    ("PATCH", cosmos),
                    polls,
                    ("GET", gw.clone()),
                ],
                ("DELETE", gw),
            ),
        }
    }

    /// Quick: every kind once per phase, each on a different target. Soak: `only` on every target.
    pub fn rules(self, ep: Ep, only: Option<Kind>, count: u64) -> Vec<(Kind, Value)> {
        let (targets, lro) = self.targets(ep);
        let lro = (lro.0, lro.1.as_str());
        match only {
            None => KINDS
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let (m, p) = &targets[(i + self as usize) % targets.len()];
                    (*k, k.rule(m, p, lro, count))
                })
                .collect(),
            Some(k) => {
                let mut v: Vec<(Kind, Value)> = targets
                    .iter()
                    .map(|(m, p)| (k, k.rule(m, p, lro, count)))
                    .collect();
                if k == Kind::FailedOperation {
                    v.truncate(1);
                }
                v
            }
        }
    }
}
