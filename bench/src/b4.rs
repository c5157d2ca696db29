//! B4: back-door detection latency at 100 endpoints: the SCM site opened out of band, until
//! fhirlock has closed it again.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fhirlock_testkit::{Counts, PORTAL_CLIENT, PORTAL_SECRET, Throttle};
use serde_json::{Value, json};

use crate::b2::TIME_SCALE;
use crate::estate::site_id;
use crate::log;
use crate::md::{fmt_ratio, table_header};
use crate::world::{World, converge};

const WEB: &str = "2024-11-01";
const RESYNC: u64 = 60;

pub async fn run() -> anyhow::Result<String> {
    let n = 100;
    let resync = RESYNC.to_string();
    let (w, op, _) = converge(
        n,
        TIME_SCALE,
        Some(Throttle::raised()),
        &["--resync-seconds", &resync],
        Duration::from_secs(900),
        false,
    )
    .await?;
    log("b4: converged; Azure's bucket sizes from here on; opening back doors");
    w.emu.control.set_throttle(&Throttle::azure()).await?;
    // Let the convergence burst pass (each endpoint's last reconcile requeued one resync later).
    tokio::time::sleep(Duration::from_secs(RESYNC + 10)).await;
    w.emu.control.reset_stats().await?;
    let doors = open_back_doors(&w, n).await?;
    let fl = w.operator_counts().await?;
    drop(op);
    drop(w);
    report(n, &doors, &fl)
}

/// Back doors over one resync period, and how long each stayed open.
struct Doors {
    /// Endpoint → seconds from its back door's opening to its closing.
    closed: BTreeMap<usize, f64>,
    /// Seconds from the first scheduled opening to the last closing (or the cut-off).
    window: f64,
    /// Some were still open at the cut-off.
    cut_off: bool,
}

async fn open_back_doors(w: &World, n: usize) -> anyhow::Result<Doors> {
    let span = RESYNC as f64;
    let t0 = Instant::now();
    let portal = w
        .emu
        .ready
        .arm_client(PORTAL_CLIENT, PORTAL_SECRET, "fhirlock-bench")?;
    // One back door per endpoint, at uniformly random times over one resync period: the SCM
    // site opened to everyone (the portal's "allow all" on the advanced tool site).
    let mut schedule: Vec<(f64, usize)> =
        (0..n).map(|i| (rand::random_range(0.0..span), i)).collect();
    schedule.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut opened: BTreeMap<usize, f64> = BTreeMap::new();
    let mut closed: BTreeMap<usize, f64> = BTreeMap::new();
    let mut next = 0;
    let deadline = span + 3.0 * RESYNC as f64;
    let mut cut_off = false;
    while closed.len() < n {
        let now = t0.elapsed().as_secs_f64();
        if now > deadline {
            log(format!(
                "b4: {} of {n} back doors still open after {deadline:.0} s",
                n - closed.len()
            ));
            cut_off = true;
            break;
        }
        while next < schedule.len() && schedule[next].0 <= now {
            let i = schedule[next].1;
            portal
                .patch(
                    &format!("{}/config/web", site_id(i)),
                    WEB,
                    &json!({"properties": {"scmIpSecurityRestrictionsDefaultAction": "Allow", "scmIpSecurityRestrictionsUseMain": false}}),
                )
                .await
                .context("opening a back door")?;
            opened.insert(i, t0.elapsed().as_secs_f64());
            next += 1;
        }
        if opened.len() > closed.len() {
            let exposure = w.emu.control.exposure().await?;
            let at = t0.elapsed().as_secs_f64();
            for (&i, &t) in &opened {
                if closed.contains_key(&i) {
                    continue;
                }
                if !scm_open(&exposure, &site_id(i)) {
                    closed.insert(i, at - t);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(Doors {
        closed,
        window: t0.elapsed().as_secs_f64(),
        cut_off,
    })
}

fn report(n: usize, doors: &Doors, fl: &Counts) -> anyhow::Result<String> {
    let span = RESYNC as f64;
    let (closed, window, cut_off) = (&doors.closed, doors.window, doors.cut_off);
    let deadline = span + 3.0 * RESYNC as f64;
    let mut lat: Vec<f64> = closed.values().cloned().collect();
    lat.sort_by(f64::total_cmp);
    // Over all n back doors; one still open at the cut-off counts as longer than any closed one.
    let pct = |p: f64| {
        lat.get(((p * n as f64).ceil() as usize).clamp(1, n) - 1)
            .copied()
    };
    let secs = |v: Option<f64>| v.map_or("still open".to_owned(), |v| format!("{v:.1}"));
    let ratio = |v: Option<f64>| {
        v.map_or("not closed by the cut-off".to_owned(), |v| {
            fmt_ratio(v / RESYNC as f64)
        })
    };
    let (p50, p99, max) = (
        pct(0.50),
        pct(0.99),
        if cut_off { None } else { lat.last().copied() },
    );
    let reads_per_s = fl.reads as f64 / window;
    let share = reads_per_s / Throttle::azure().reads.1;
    let mut md = String::new();
    writeln!(md, "## B4: back-door detection latency at 100 endpoints\n")?;
    writeln!(
        md,
        "100 converged endpoints (converged as in B2, then the emulator's buckets set to ARM's sizes), `fhirlock run --resync-seconds {RESYNC}`. \
         After one quiet resync period, the portal principal (`portal-user`, plain ARM PATCHes of `config/web`) opens one back door \
         per endpoint — the SCM site opened to everyone (`scmIpSecurityRestrictionsDefaultAction: Allow`, not using the main rules) — \
         at uniformly random times over {span:.0} s. Latency runs from the PATCH's answer until the emulator's exposure oracle \
         (`/_emulator/exposure`, polled every 250 ms) no longer finds the SCM endpoint reachable. The reference is the configured resync period \
         (jittered ±10%), which bounds the latency. The read rate is the operator principal's ARM reads over the whole {window:.0} s window \
         (resyncs, the corrections' own reads and the re-reads after them), as a share of the read bucket's refill rate (25 per s).\n"
    )?;
    table_header(
        &mut md,
        &[
            "endpoints",
            "back doors closed",
            "p50 / resync",
            "p99 / resync",
            "p50 (s)",
            "p99 (s)",
            "max (s)",
            "operator reads / s",
            "share of the read refill (25/s)",
            "operator writes",
            "429s",
        ],
        false,
    )?;
    writeln!(
        md,
        "| {n} | {} | **{}** | **{}** | {} | {} | {} | {reads_per_s:.2} | **{:.0}%** | {} | {} |",
        lat.len(),
        ratio(p50),
        ratio(p99),
        secs(p50),
        secs(p99),
        secs(max),
        share * 100.0,
        fl.writes,
        fl.status(429)
    )?;
    if cut_off {
        writeln!(
            md,
            "\nCut off {deadline:.0} s after the first back door opened, with {} of {n} still open; {} of the operator's reads \
             were answered 429.",
            n - lat.len(),
            fl.status(429)
        )?;
    }
    if cut_off {
        writeln!(
            md,
            "\nReads per second count every GET the operator sent, those answered 429 included."
        )?;
    } else {
        writeln!(
            md,
            "\nThe read rate scales as 7 × endpoints / resync period: at the default `--resync-seconds 300` it is a fifth of the figure above, \
         and latency scales with the period the same way."
        )?;
    }
    Ok(md)
}

/// Whether the exposure oracle finds a site's SCM endpoint reachable from the internet.
fn scm_open(exposure: &Value, site: &str) -> bool {
    let sites = exposure["sites"].as_object();
    let Some(s) = sites.and_then(|m| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(site))
            .map(|(_, v)| v)
    }) else {
        return true;
    };
    s["scm"]["reachableFrom"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x["source"] == "internet"))
}
