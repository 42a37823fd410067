//! `kubectl ray`: KubeRay v1.7's kubectl plugin in Rust. Each command is a
//! module; Ray knowledge (quantities, conditions, names, ports) comes from
//! `kuberay-api` and the operator's `ray` layer, not from copies.

pub mod cli;
pub mod config;
pub mod connect;
pub mod create;
pub mod delete;
pub mod generation;
pub mod get;
pub mod job;
pub mod log;
pub mod portforward;
pub mod resource;
pub mod scale;
pub mod session;
pub mod table;
pub mod update;
pub mod validation;
pub mod version;
pub mod wait;

use std::collections::BTreeSet;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};

/// The parsed command line and the ids of the leaf command's arguments
/// given on it (KubeRay asks "was this flag set?" in places).
pub fn parse<I, T>(args: I) -> Result<(Cli, BTreeSet<String>), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let command = Cli::command();
    let matches = command.clone().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let (mut leaf, mut leaf_command) = (&matches, &command);
    while let Some((name, sub)) = leaf.subcommand() {
        leaf = sub;
        leaf_command = leaf_command
            .find_subcommand(name)
            .expect("matched subcommands exist");
    }
    // Argument ids only: argument groups (one per flattened struct) have ids too.
    let explicit = leaf_command
        .get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| leaf.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .map(str::to_string)
        .collect();
    Ok((cli, explicit))
}

pub async fn run(cli: Cli, explicit: BTreeSet<String>) -> Result<()> {
    let flags = &cli.kube;
    match cli.command {
        Command::Get { what } => get::run(flags, what).await,
        Command::Create { what } => create::run(flags, what, &explicit).await,
        Command::Delete(a) => delete::run(flags, a).await,
        Command::Scale { what } => scale::run(flags, what).await,
        Command::Version => version::run(flags).await,
        Command::Session(a) => session::run(flags, a).await,
        Command::Log(a) => log::run(flags, a).await,
        Command::Job { what } => job::run(flags, what, &explicit).await,
    }
}
