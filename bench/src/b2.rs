//! B2: convergence of 1, 10 and 100 endpoints from scratch, against the critical path of the
//! emulated operations.

use std::fmt::Write as _;
use std::time::Duration;

use fhirlock_testkit::Throttle;

use crate::log;
use crate::md::{fmt_ratio, table_header};
use crate::world::converge;

/// Azure time per real second: a 300 s gateway takes 6 s.
pub const TIME_SCALE: f64 = 0.02;

pub async fn run() -> anyhow::Result<String> {
    let mut rows = Vec::new();
    for n in [1usize, 10, 100] {
        log(format!("b2: {n} endpoint(s)"));
        let (w, op, c) = converge(
            n,
            TIME_SCALE,
            Some(Throttle::raised()),
            &["--resync-seconds", "60"],
            Duration::from_secs(900),
            false,
        )
        .await?;
        log(format!(
            "b2: {n}: wall {:.1} s, critical path {:.1} s, cpu {:.2} s",
            c.wall, c.critical, c.cpu
        ));
        drop(op);
        drop(w);
        rows.push(c);
    }
    let mut md = String::new();
    writeln!(
        md,
        "## B2: convergence from scratch, 1, 10 and 100 endpoints\n"
    )?;
    writeln!(
        md,
        "Each size in a fresh control plane and emulator (time scale {TIME_SCALE}: a 300 s gateway takes {:.0} s), each endpoint \
         with its own wide-open estate and VNet, the throttle raised out of the way (buckets of 1,000,000 requests; B5 uses Azure's). \
         `fhirlock run` with the defaults (`--concurrency 4`, `--arm-budget-share 0.5`) and `--resync-seconds 60`, started and ready \
         before the endpoints are created with one `kubectl create -f`. Wall time runs from that `kubectl create` until every endpoint \
         is `Ready`. The reference is the **critical path**: fhirlock runs one long-running operation at a time per endpoint and the \
         endpoints are independent, so no schedule can finish before the largest per-endpoint sum of the durations the emulator \
         gave the operations (read from its operation log, `/_emulator/state`). CPU is the operator process's user + system time \
         over the same interval (`/proc/<pid>/stat`).\n",
        300.0 * TIME_SCALE
    )?;
    table_header(
        &mut md,
        &[
            "endpoints",
            "wall / critical path",
            "wall (s)",
            "critical path (s)",
            "operations",
            "operator CPU s per endpoint",
            "ARM reads",
            "ARM writes",
            "reconciles",
        ],
        false,
    )?;
    for c in &rows {
        writeln!(
            md,
            "| {} | **{}** | {:.1} | {:.1} | {} | {:.3} | {} | {} | {} |",
            c.n,
            fmt_ratio(c.wall / c.critical),
            c.wall,
            c.critical,
            c.ops,
            c.cpu / c.n as f64,
            c.counts.reads,
            c.counts.writes,
            c.reconciles
        )?;
    }
    Ok(md)
}
