//! The parts of an endpoint that status reports on, one condition each.

use serde::{Deserialize, Serialize};

/// A component of the locked-down endpoint; each has its own status condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Component {
    Subnets,
    Gateway,
    AppService,
    Cosmos,
}

impl Component {
    /// In the order status lists their conditions.
    pub const ALL: [Component; 4] = [
        Component::Subnets,
        Component::Gateway,
        Component::AppService,
        Component::Cosmos,
    ];

    /// The type of the status condition that reports this component.
    pub fn condition_type(self) -> &'static str {
        match self {
            Component::Subnets => "SubnetsReady",
            Component::Gateway => "GatewayReady",
            Component::AppService => "AppServiceLocked",
            Component::Cosmos => "CosmosLocked",
        }
    }
}
