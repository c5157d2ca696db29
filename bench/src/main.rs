//! `make bench`: benchmarks B1–B5, measured against a real kube-apiserver and etcd (`testenv`),
//! the `arm-emulator` binary and the `fhirlock run` binary, all as separate processes (release
//! builds), through the harness the end-to-end tests use (`fhirlock-testkit`). Writes
//! `docs/benchmarks.md`.
//!
//! ```text
//! fhirlock-bench [b1] [b2] [b3] [b4] [b5]     (none: all five)
//! fhirlock-bench doc                          (only re-assemble the document)
//! ```
//!
//! Each benchmark writes its section to `target/bench/<b>.md`; the document is assembled from the
//! sections present, so one benchmark can be re-run alone. Request counts come from the emulator's
//! `/_emulator/stats` (exact); times are reported against a reference measured in the same run.

mod b1;
mod b2;
mod b3;
mod b4;
mod b5;
mod doc;
mod estate;
mod md;
mod world;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;

fn out_dir() -> PathBuf {
    testenv::workspace_root().join("target/bench")
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench {}] {}", utc_now(), msg.as_ref());
}

fn utc_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn command_for(b: &str) -> String {
    format!("make bench BENCH={b}")
}

/// The commit being measured, marked when crates/ or bench/ have uncommitted changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(testenv::workspace_root())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]);
    if git(&["status", "--porcelain", "--", "crates", "bench"]).is_empty() {
        format!("`{head}`")
    } else {
        format!("`{head}` (with uncommitted changes in crates/ or bench/)")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut which: Vec<String> = std::env::args().skip(1).collect();
    if which.is_empty() {
        which = ["b1", "b5", "b2", "b4", "b3"].map(String::from).to_vec();
    }
    std::fs::create_dir_all(out_dir())?;
    if which == ["doc"] {
        // Only re-assemble docs/benchmarks.md from the sections already measured.
        return doc::write_doc();
    }
    let started = Instant::now();
    for b in &which {
        run(b).await?;
        doc::write_doc()?;
    }
    log(format!(
        "all done in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Runs benchmark `b` and writes its section: what it measured, or why it could not.
async fn run(b: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    log(format!("{b}: start"));
    let section = match b {
        "b1" => b1::run().await,
        "b2" => b2::run().await,
        "b3" => b3::run().await,
        "b4" => b4::run().await,
        "b5" => b5::run().await,
        other => bail!("unknown benchmark {other:?} (b1..b5)"),
    };
    let md = match section {
        Ok(md) => {
            log(format!("{b}: done in {:.0} s", t.elapsed().as_secs_f64()));
            format!(
                "{md}\nMeasured {} at commit {} by `{}`; this benchmark took {:.0} s.\n",
                utc_now(),
                commit(),
                command_for(b),
                t.elapsed().as_secs_f64()
            )
        }
        Err(e) => {
            log(format!("{b}: FAILED: {e:#}"));
            format!(
                "**Not measured**: the run of `{}` on {} failed: `{}`\n",
                command_for(b),
                utc_now(),
                format!("{e:#}").replace('`', "'")
            )
        }
    };
    std::fs::write(out_dir().join(format!("{b}.md")), md).map_err(anyhow::Error::from)
}
