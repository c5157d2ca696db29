//! Nothing secret reaches a log line, even at TRACE level with every crate's logging on.

mod common;

use common::*;
use fhirlock_arm::{ArmClient, ErrorClass};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Current-thread runtime: the subscriber set for this thread sees every task, the emulator's too.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_or_token_in_any_log_line() {
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emu = Emulator::start().await;
    let (client, _) = emu.operator();
    let rg = emu.rg("rg-logs");
    assert_eq!(client.get(&rg, RG_API).await.unwrap(), None);
    client
        .put(&rg, RG_API, &json!({"location":"uksouth"}))
        .await
        .unwrap();
    // An expired-token 401: the refresh path logs too.
    emu.fault(json!({"path":"*/resourceGroups/rg-logs","count":1,"status":401}))
        .await;
    assert!(client.get(&rg, RG_API).await.unwrap().is_some());
    // A refused secret.
    let wrong_secret = "wrong-secret-7f3a9c";
    let wrong =
        ArmClient::new(emu.config(emu.secret_credential(DEV_CLIENT_ID, wrong_secret))).unwrap();
    assert_eq!(
        wrong.get(&rg, RG_API).await.unwrap_err().class,
        ErrorClass::Auth
    );

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("ARM request"),
        "logging was captured:\n{logs}"
    );
    assert!(logs.contains("exchanging for a new one"), "{logs}");
    for secret in [DEV_CLIENT_SECRET, wrong_secret] {
        assert!(
            !logs.contains(secret),
            "secret {secret} in the logs:\n{logs}"
        );
    }
    // Access tokens and assertions are JWTs: base64url of '{"' starts with "eyJ".
    assert!(!logs.contains("eyJ"), "a JWT in the logs:\n{logs}");
    // azure_core logs request headers; the Authorization header must be redacted.
    for line in logs.lines() {
        let lower = line.to_ascii_lowercase();
        if let Some(i) = lower.find("authorization:") {
            assert!(
                line[i + "authorization:".len()..]
                    .trim_start()
                    .starts_with("REDACTED"),
                "{line}"
            );
        }
    }
}
