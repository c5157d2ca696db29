//! Azure as a person in the portal sees it.

use super::*;

/// The portal principal, retrying what injected faults or a restarting emulator make fail.
pub struct Portal {
    pub arm: ArmClient,
    pub rt: tokio::runtime::Runtime,
}

impl Portal {
    pub fn retry<T>(&self, what: &str, f: impl AsyncFn() -> Result<T, ArmError>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.rt.block_on(f()) {
                Ok(v) => return v,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => panic!("portal {what}: {e}"),
            }
        }
    }

    pub fn get(&self, id: &str, api: &str) -> Option<Value> {
        self.retry(&format!("GET {id}"), async || self.arm.get(id, api).await)
    }

    /// A write, waiting for its operation to end.
    pub fn write(&self, method: &str, id: &str, api: &str, body: &Value) {
        let out = self.retry(&format!("{method} {id}"), async || match method {
            "PUT" => self.arm.put(id, api, body).await,
            "PATCH" => self.arm.patch(id, api, body).await,
            _ => self.arm.delete(id, api).await,
        });
        if let WriteOutcome::Accepted(op) = out {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                match self.rt.block_on(self.arm.poll(&op)) {
                    Ok(OperationStatus::Succeeded) => break,
                    Ok(OperationStatus::Failed(e)) => panic!("portal {method} {id} failed: {e}"),
                    _ => {}
                }
                assert!(
                    Instant::now() < deadline,
                    "portal {method} {id} never ended"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
