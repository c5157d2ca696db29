//! `testenv up`: starts a control plane, prints one JSON line with its kubeconfig path and server
//! URL, and keeps it running until SIGINT or SIGTERM, then stops it cleanly (used by `make demo`).

use std::io::Write as _;

fn main() -> anyhow::Result<()> {
    let plane = testenv::ControlPlane::start()?;
    let ready = serde_json::json!({
        "kubeconfig": plane.kubeconfig_path(),
        "server": plane.server,
        "dir": plane.dir(),
    });
    println!("{ready}");
    std::io::stdout().flush()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    plane.stop();
    Ok(())
}
