//! `fhirlock`: the operator (`run`, with the controller) and its one-shot commands.

use std::time::Duration;

use clap::{Parser, Subcommand};
use fhirlock::oneshot;

#[derive(Parser)]
#[command(
    name = "fhirlock",
    version,
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
    Audit {
        #[command(flatten)]
        target: oneshot::Target,
        #[arg(short, long, value_enum, default_value = "table")]
        output: oneshot::Output,
    },
    /// Show the changes apply would make: resource, field, from -> to, why. Exit 2 when
    /// pre-flight stops it.
    Plan {
        #[command(flatten)]
        target: oneshot::Target,
        #[arg(short, long, value_enum, default_value = "table")]
        output: oneshot::Output,
        /// Exit 0 when Azure matches the spec, 1 when changes are pending, 2 on errors (as
        /// `terraform plan -detailed-exitcode`).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Make the changes, one long-running operation at a time, until Azure matches the spec. An
    /// endpoint in Audit mode is never written: exit 0 if Azure matches, else 1.
    Apply {
        #[command(flatten)]
        target: oneshot::Target,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_seconds: u64,
    },
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let code = match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Run(args) => {
            rt()?.block_on(fhirlock::controller::run(args))?;
            Ok(0)
        }
        Command::Crd => {
            print!("{}", fhirlock_api::crds_yaml());
            Ok(0)
        }
        Command::Audit { target, output } => rt()?.block_on(oneshot::audit(&target, output)),
        Command::Plan {
            target,
            output,
            detailed_exitcode,
        } => rt()?.block_on(oneshot::plan(&target, output, detailed_exitcode)),
        Command::Apply {
            target,
            timeout_seconds,
        } => rt()?.block_on(oneshot::apply(
            &target,
            Duration::from_secs(timeout_seconds),
        )),
    }
}
