//! Microsoft.DocumentDB: database accounts, their exclusive write lock, and the delay before a
//! firewall change reaches the data plane.

use serde_json::Value;

use super::{Engine, R, Response, loc_slug};
use crate::enrich::{self, merge, render};
use crate::error::ArmError;
use crate::ids::ArmPath;
use crate::state::{OpKind, Resource};
use crate::util::uuid4;
use crate::validate::{self, *};

impl Engine {
    pub(super) fn put_cosmos(
        &mut self,
        p: &ArmPath,
        body: Value,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
        let sub = p.subscription.clone();
        Self::require_location(&body)?;
        let existing = self.state.get(&id).cloned();
        if existing.is_some() {
            self.cosmos_conflict(&id, now)?;
        }
        validate::cosmos_put(&self.state, &id, &body, None, true)?;
        let loc = loc_slug(&body);
        let created = self.upsert(&id, COSMOS, body);
        self.record_firewall(&id, created, now);
        Ok(self.put_accepted(created, 200, &id, COSMOS, &sub, &loc, api, now, fail))
    }

    pub(super) fn patch_cosmos(
        &mut self,
        p: &ArmPath,
        existing: &Resource,
        body: &Value,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
        self.cosmos_conflict(&id, now)?;
        let mut merged = existing.body.clone();
        merge(&mut merged, body);
        validate::cosmos_put(&self.state, &id, &merged, Some(&existing.body), false)?;
        self.upsert(&id, COSMOS, merged.clone());
        self.record_firewall(&id, false, now);
        let op = self.start_op(
            OpKind::Update,
            &id,
            COSMOS,
            &p.subscription,
            &loc_slug(&merged),
            api,
            now,
            fail,
        );
        let r = self.state.get(&id).expect("stored");
        let resp = Response::json(200, &render(&self.state, r));
        Ok(self.lro_headers(&op, resp, false))
    }

    pub(super) fn delete_cosmos(
        &mut self,
        p: &ArmPath,
        existing: &Resource,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
        let sub = p.subscription.clone();
        self.cosmos_conflict(&id, now)?;
        let op = self.start_op(
            OpKind::Delete,
            &id,
            COSMOS,
            &sub,
            &loc_slug(&existing.body),
            api,
            now,
            fail,
        );
        Ok(self.lro_headers(&op, Response::empty(202), true))
    }

    /// Cosmos locks the account for the length of an operation; the status is configurable.
    fn cosmos_conflict(&self, id: &str, now: u64) -> R<()> {
        if self.state.running_op_on(&[id.to_string()], now).is_some() {
            let name = ArmPath::parse(id).map(|p| p.name()).unwrap_or_default();
            let status = self.cfg.behaviour.cosmos_conflict_status;
            let (code, msg) = if status == 409 {
                (
                    "AnotherOperationInProgress",
                    format!(
                        "Another operation on this or dependent resource is in progress. Account: {name}."
                    ),
                )
            } else {
                (
                    "PreconditionFailed",
                    format!(
                        "There is another user operation in progress which requires an exclusive lock on [{name}]. Please retry after sometime.\r\nActivityId: {}, Microsoft.Azure.Documents.Common/2.14.0",
                        uuid4()
                    ),
                )
            };
            return Err(ArmError::new(status, code, msg));
        }
        Ok(())
    }

    /// Cosmos: remember when the data plane will see the new firewall.
    fn record_firewall(&mut self, id: &str, created: bool, now: u64) {
        let Some(r) = self.state.get(id) else { return };
        let net = enrich::cosmos_network(props(&r.body));
        let secs = self.cfg.lro.cosmos_firewall_propagation_seconds;
        self.record_effect(id, net, secs, created, now);
    }
}
