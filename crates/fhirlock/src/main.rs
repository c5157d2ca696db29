//! `fhirlock`: the operator (`run`, with the controller) and its one-shot commands. Installed (or
//! linked) as `kubectl-fhirlock`, it is a kubectl plugin with the read-only commands only.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use fhirlock::oneshot;

/// The git commit, from build.rs: `unknown` when built from a tarball without `.git`.
const COMMIT: &str = env!("FHIRLOCK_GIT_COMMIT");
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FHIRLOCK_GIT_COMMIT"),
    ")"
);
/// kubectl runs `kubectl-<name>` from PATH for `kubectl <name>`, keeping that file name as argv[0]
/// (kubernetes.io, "Extend kubectl with plugins").
const PLUGIN: &str = "kubectl-fhirlock";

#[derive(Parser)]
#[command(
    name = "fhirlock",
    version,
    long_version = LONG_VERSION,
    about = "Keeps an Azure FHIR API reachable only through a private Application Gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: reconcile SecuredFhirEndpoints continuously.
    Run(fhirlock::controller::RunArgs),
    /// Print the CustomResourceDefinition YAML (what crds/ holds).
    Crd,
    /// Report every way in other than the gateway. Exit 0 compliant, 1 findings, 2 error.
    Audit(AuditArgs),
    /// Show the changes apply would make: resource, field, from -> to, why. Exit 2 when
    /// pre-flight stops it.
    Plan(PlanArgs),
    /// Make the changes, one long-running operation at a time, until Azure matches the spec. An
    /// endpoint in Audit mode is never written: exit 0 if Azure matches, else 1.
    Apply {
        #[command(flatten)]
        target: oneshot::Target,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_seconds: u64,
    },
    /// First run, before any spec: list every App Service site and Cosmos DB account in a
    /// subscription (or resource group), report their back doors, and write a starter
    /// SecuredFhirEndpoint for each site that looks like a FHIR server. Reads only. Exit 0 no
    /// blocking findings, 1 blocking findings, 2 error.
    Scan(fhirlock::scan::ScanArgs),
    /// Print the version and the git commit this binary was built from.
    Version,
    /// Print a shell completion script: `source <(fhirlock completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Args)]
struct AuditArgs {
    #[command(flatten)]
    target: oneshot::Target,
    #[arg(short, long, value_enum, default_value = "table")]
    output: oneshot::Output,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    target: oneshot::Target,
    #[arg(short, long, value_enum, default_value = "table")]
    output: oneshot::Output,
    /// Exit 0 when Azure matches the spec, 1 when changes are pending, 2 on errors (as
    /// `terraform plan -detailed-exitcode`).
    #[arg(long)]
    detailed_exitcode: bool,
}

/// The shells whose completion scripts the tests load into the real shell.
#[derive(Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `kubectl fhirlock`: what a platform user runs against Azure from a shell, nothing that writes.
/// `run` and `apply` stay with the `fhirlock` binary itself.
#[derive(Parser)]
#[command(
    name = PLUGIN,
    bin_name = "kubectl fhirlock",
    version,
    long_version = LONG_VERSION,
    about = "fhirlock as a kubectl plugin: scan a subscription, audit and plan a SecuredFhirEndpoint against Azure"
)]
struct PluginCli {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Report every way in other than the gateway. Exit 0 compliant, 1 findings, 2 error.
    Audit(AuditArgs),
    /// Show the changes `fhirlock apply` would make. Exit 2 when pre-flight stops it.
    Plan(PlanArgs),
    /// Find every App Service and Cosmos DB account in scope and report their back doors; read-only.
    Scan(fhirlock::scan::ScanArgs),
    /// Print the version and the git commit this binary was built from.
    Version,
}

impl From<PluginCommand> for Command {
    fn from(c: PluginCommand) -> Command {
        match c {
            PluginCommand::Audit(a) => Command::Audit(a),
            PluginCommand::Plan(p) => Command::Plan(p),
            PluginCommand::Scan(s) => Command::Scan(s),
            PluginCommand::Version => Command::Version,
        }
    }
}

/// Whether argv[0] names the plugin (`kubectl-fhirlock`, `.exe` on Windows), through a link or a
/// copy.
fn is_plugin(argv0: Option<&OsString>) -> bool {
    argv0
        .and_then(|a| Path::new(a).file_stem())
        .is_some_and(|s| s == PLUGIN)
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let command = if is_plugin(std::env::args_os().next().as_ref()) {
        PluginCli::parse().command.into()
    } else {
        Cli::parse().command
    };
    let code = match run(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn run(command: Command) -> anyhow::Result<i32> {
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match command {
        Command::Run(args) => {
            rt()?.block_on(fhirlock::controller::run(args))?;
            Ok(0)
        }
        Command::Crd => {
            print!("{}", fhirlock_api::crds_yaml());
            Ok(0)
        }
        Command::Audit(AuditArgs { target, output }) => {
            rt()?.block_on(oneshot::audit(&target, output))
        }
        Command::Plan(PlanArgs {
            target,
            output,
            detailed_exitcode,
        }) => rt()?.block_on(oneshot::plan(&target, output, detailed_exitcode)),
        Command::Apply {
            target,
            timeout_seconds,
        } => rt()?.block_on(oneshot::apply(
            &target,
            Duration::from_secs(timeout_seconds),
        )),
        Command::Scan(args) => rt()?.block_on(fhirlock::scan::scan(&args)),
        Command::Version => {
            println!("fhirlock {}", env!("CARGO_PKG_VERSION"));
            println!("commit: {COMMIT}");
            Ok(0)
        }
        Command::Completion { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "fhirlock",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    }
}

// build.rs's commit lookup, unit-tested here; its main() is cargo's, so unused in the test build.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../build.rs"]
mod build_script;

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org", "-C"])
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn the_commit_is_head_of_the_work_tree_and_unknown_without_one() {
        let tarball = tempfile::tempdir().unwrap();
        assert_eq!(build_script::commit(tarball.path()), None, "no .git");
        let repo = tempfile::tempdir().unwrap();
        git(repo.path(), &["init", "-q"]);
        git(
            repo.path(),
            &["commit", "-q", "--allow-empty", "-m", "first"],
        );
        let head = git(repo.path(), &["rev-parse", "HEAD"]);
        assert_eq!(build_script::commit(repo.path()), Some(head));
        // A tarball unpacked inside someone else's repository is not that repository's commit.
        let nested = repo.path().join("fhirlock-0.1.0");
        std::fs::create_dir(&nested).unwrap();
        assert_eq!(build_script::commit(&nested), None);
    }

    #[test]
    fn the_plugin_is_recognised_by_its_file_name_only() {
        let is = |a: &str| is_plugin(Some(&OsString::from(a)));
        assert!(is("kubectl-fhirlock"));
        assert!(is("/usr/local/bin/kubectl-fhirlock"));
        assert!(is(r"kubectl-fhirlock.exe"));
        assert!(!is("fhirlock"));
        assert!(!is("/opt/kubectl-fhirlock/fhirlock"));
        assert!(!is("kubectl-fhirlock-dev"));
        assert!(!is_plugin(None));
    }

    #[test]
    fn the_plugin_offers_audit_plan_scan_and_version_and_nothing_that_writes() {
        let names: Vec<String> = PluginCli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        assert_eq!(names, ["audit", "plan", "scan", "version"]);
        assert!(PluginCli::try_parse_from(["kubectl-fhirlock", "apply", "-f", "x"]).is_err());
        assert!(PluginCli::try_parse_from(["kubectl-fhirlock", "run"]).is_err());
        let plan = PluginCli::try_parse_from([
            "kubectl-fhirlock",
            "plan",
            "-f",
            "e.yaml",
            "--detailed-exitcode",
        ])
        .unwrap();
        assert!(matches!(
            Command::from(plan.command),
            Command::Plan(PlanArgs {
                detailed_exitcode: true,
                ..
            })
        ));
        Cli::command().debug_assert();
        PluginCli::command().debug_assert();
    }
}
