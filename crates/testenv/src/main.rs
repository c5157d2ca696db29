//! `testenv`: the local control plane for the demo.
//!
//! - `testenv` (or `testenv up`): start etcd + kube-apiserver, print one JSON line with the
//!   kubeconfig path and server URL, keep running until SIGINT or SIGTERM, then stop cleanly.
//! - `testenv cert HOST DIR`: write a self-signed `tls.crt` and `tls.key` for HOST into DIR (the
//!   demo's stand-in for what cert-manager would issue).

use std::io::Write as _;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("up") => up(),
        Some("cert") if args.len() == 3 => cert(&args[1], std::path::Path::new(&args[2])),
        _ => anyhow::bail!("usage: testenv [up] | testenv cert HOST DIR"),
    }
}

fn up() -> anyhow::Result<()> {
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

fn cert(host: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let (cert, key) = testenv::self_signed(host)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("tls.crt"), cert)?;
    std::fs::write(dir.join("tls.key"), key)?;
    Ok(())
}
