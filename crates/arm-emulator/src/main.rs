//! `arm-emulator --addr 127.0.0.1:PORT --data-dir DIR [--config FILE] [--time-scale F]`

use clap::Parser;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "arm-emulator",
    version,
    about = "Local, faithful Azure Resource Manager + Entra token endpoint over HTTPS"
)]
struct Cli {
    /// Listen address (port 0 picks a free port; the ready line says which).
    #[arg(long, default_value = "127.0.0.1:8443")]
    addr: String,
    /// Where the CA, the token-signing key and the state live. Reused across restarts.
    #[arg(long)]
    data_dir: PathBuf,
    /// Config file (YAML or JSON). Without it: the development tenant (see docs/emulator.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Multiplies every long-running-operation duration, Retry-After and propagation delay.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Extra host names for the server certificate (repeatable).
    #[arg(long = "hostname")]
    hostnames: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    if cli.time_scale.is_nan() || cli.time_scale < 0.0 {
        eprintln!("arm-emulator: --time-scale must be >= 0");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let opts = arm_emulator::server::Options {
            addr: cli.addr,
            data_dir: cli.data_dir,
            config: cli.config,
            time_scale: cli.time_scale,
            hostnames: cli.hostnames,
        };
        let running = match arm_emulator::server::start(opts).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("arm-emulator: {e}");
                std::process::exit(1);
            }
        };
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{}", running.ready_line());
        let _ = out.flush();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        running.stop();
    });
}
