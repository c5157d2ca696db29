//! B5: 100 endpoints converging under Azure's real bucket sizes.

use std::fmt::Write as _;
use std::time::Duration;

use crate::b2::TIME_SCALE;
use crate::md::{fmt_ratio, table_header};
use crate::world::converge;

/// B5 stops waiting after this long (about 20 times the critical path at this time scale) and
/// reports how far convergence got.
const CUTOFF: u64 = 240;

pub async fn run() -> anyhow::Result<String> {
    let n = 100;
    let (w, op, c) = converge(
        n,
        TIME_SCALE,
        None,
        &["--resync-seconds", "60"],
        Duration::from_secs(CUTOFF),
        true,
    )
    .await?;
    let arm_429 = op.arm_requests_with_status("429")?;
    drop(op);
    drop(w);
    let mut md = String::new();
    writeln!(
        md,
        "## B5: 100 endpoints converging under Azure's bucket sizes\n"
    )?;
    writeln!(
        md,
        "As B2 with 100 endpoints (time scale {TIME_SCALE}, `--resync-seconds 60`, otherwise defaults), but the emulator's \
         throttle at ARM's documented sizes, per subscription and principal: reads 250 / refill 25 per s, writes 200 / 10 per s, \
         deletes 200 / 10 per s. A 429 is counted by the emulator (operator principal). fhirlock never re-sends a throttled \
         request inside a reconcile: the reconcile ends, and the endpoint is requeued after the longer of `Retry-After` and its \
         exponential backoff, with jitter (counted as `fhirlock_reconciles_total{{result=\"error\"}}`). Observing is held back \
         while the estimated read bucket is below fhirlock's share (`--arm-budget-share`), and writes likewise \
         (`fhirlock_arm_deferred_writes_total`). After its own writes, the next reconcile re-reads only what they changed.\n"
    )?;
    table_header(
        &mut md,
        &[
            "endpoints",
            "Ready at the end",
            "429s (emulator)",
            "429s seen by fhirlock",
            "retries: reconciles requeued after an ARM error",
            "deferred writes",
            "ARM requests",
            "reads",
            "writes",
            "wall / critical path",
            "wall (s)",
        ],
        false,
    )?;
    writeln!(
        md,
        "| {} | **{}** | **{}** | {} | **{}** | {} | {} | {} | {} | {} | {:.1} |",
        c.n,
        c.ready,
        c.counts.status(429),
        arm_429,
        c.reconcile_errors,
        c.deferred,
        c.counts.total(),
        c.counts.reads,
        c.counts.writes,
        if c.ready == c.n {
            fmt_ratio(c.wall / c.critical)
        } else {
            format!("not converged; cut off at {CUTOFF} s")
        },
        c.wall
    )?;
    if c.ready < c.n {
        writeln!(
            md,
            "\nThe run was cut off after {CUTOFF} s with {} of {} endpoints `Ready` (the critical path of the operations that \
             did run: {:.1} s). The operator read {:.1} times per second, against the read bucket's refill of 25 per second.",
            c.ready,
            c.n,
            c.critical,
            c.counts.reads as f64 / c.wall
        )?;
    }
    writeln!(
        md,
        "\nReads per endpoint: {:.1} (B2 without the throttle, same build: see its table). Reconciles: {}.",
        c.counts.reads as f64 / c.n as f64,
        c.reconciles
    )?;
    let others: Vec<String> = c
        .counts
        .by_status
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    writeln!(md, "\nARM answers by status: {}.", others.join(", "))?;
    Ok(md)
}
