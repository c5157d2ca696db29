//! B3: the operator's memory and CPU at 1,000 endpoints in steady state.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use fhirlock_testkit::Throttle;

use crate::log;
use crate::md::table_header;
use crate::world::converge;

const N: usize = 1000;
const RESYNC: u64 = 300;

pub async fn run() -> anyhow::Result<String> {
    let resync = RESYNC.to_string();
    // Converge with resyncs out of the way: on two shared cores, 1,000 endpoints resyncing every
    // minute crowd out the last ones still converging (they slow to a few a minute).
    let (w, op, c) = converge(
        N,
        0.01,
        Some(Throttle::raised()),
        &["--resync-seconds", "3600", "--concurrency", "16"],
        Duration::from_secs(3600),
        false,
    )
    .await?;
    log(format!(
        "b3: {N} converged in {:.0} s; restarting the operator with --resync-seconds {RESYNC}",
        c.wall
    ));
    // The steady state measured is a fresh operator's: it lists the 1,000 endpoints, looks at
    // each once, then resyncs. Wait out that first look (one resync period), then measure one.
    drop(op);
    let op = w
        .operator(&["--resync-seconds", &resync, "--concurrency", "16"])
        .await?;
    tokio::time::sleep(Duration::from_secs(RESYNC)).await;
    let (cpu0, r0) = (op.cpu_seconds()?, op.reconciles()?);
    w.emu.control.reset_stats().await?;
    let t0 = Instant::now();
    let mut rss_max = 0u64;
    let mut rss_samples = Vec::new();
    while t0.elapsed() < Duration::from_secs(RESYNC) {
        let (rss, _) = op.memory_kb()?;
        rss_max = rss_max.max(rss);
        rss_samples.push(rss);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let window = t0.elapsed().as_secs_f64();
    let cpu = op.cpu_seconds()? - cpu0;
    let r1 = op.reconciles()?;
    let (rss_end, hwm) = op.memory_kb()?;
    let fl = w.operator_counts().await?;
    drop(op);
    drop(w);
    let reconciles = r1.total() - r0.total();
    let mut md = String::new();
    writeln!(
        md,
        "## B3: operator memory and CPU at 1,000 endpoints in steady state\n"
    )?;
    writeln!(
        md,
        "1,000 endpoints, each with its own estate, converged from scratch (time scale 0.01, throttle raised as in B2, \
         `fhirlock run --resync-seconds 3600 --concurrency 16`; convergence took {:.0} s). Then a fresh \
         `fhirlock run --resync-seconds {RESYNC} --concurrency 16` replaces that operator; after one resync period (its first look at every endpoint), \
         the operator process is observed for {window:.0} s (one resync period): resident memory from `/proc/<pid>/status` \
         (VmRSS sampled every 2 s; VmHWM is the peak since that operator started, its first look at every endpoint included), CPU from `/proc/<pid>/stat`.\n",
        c.wall
    )?;
    table_header(
        &mut md,
        &[
            "endpoints",
            "VmRSS (MiB, max in window)",
            "VmRSS at end (MiB)",
            "VmHWM (MiB)",
            "CPU s per s (cores)",
            "CPU ms per endpoint resync",
            "reconciles in window",
            "ARM reads",
            "ARM writes",
        ],
        false,
    )?;
    writeln!(
        md,
        "| {N} | **{:.1}** | {:.1} | {:.1} | **{:.3}** | {:.2} | {reconciles} | {} | {} |",
        rss_max as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        hwm as f64 / 1024.0,
        cpu / window,
        if reconciles > 0 {
            cpu * 1000.0 / reconciles as f64
        } else {
            f64::NAN
        },
        fl.reads,
        fl.writes
    )?;
    Ok(md)
}
