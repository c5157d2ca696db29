//! `fhirlock`: the operator (`run`, coming with the controller) and its one-shot commands.

use clap::{Parser, Subcommand};

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
    /// Print the CustomResourceDefinition YAML (what crds/ holds).
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", fhirlock_api::crds_yaml()),
    }
    Ok(())
}
