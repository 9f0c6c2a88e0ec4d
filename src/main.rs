//! `whitewater`: one binary, a subcommand per role.

mod all_in_one;
mod api_token;
mod homestead;
mod management;
mod provision;
mod scscf;
mod sip_check;
mod sprout;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "whitewater", version, about = "Whitewater IMS core")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the largest option set does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// SIP message tools.
    Sip {
        #[command(subcommand)]
        command: SipCommand,
    },
    /// The SIP engine on one pinned core per CPU listed: an S-CSCF with --home-domain,
    /// else a transaction-stateful proxy that forwards by Route or Request-URI.
    Sprout(sprout::SproutCommand),
    /// Subscriber data: the Clearwater Homestead API, provisioning API, and store.
    Homestead(homestead::HomesteadCommand),
    /// Every role on one host: the SIP engine and Homestead (embedded store, demo
    /// subscribers on first start).
    AllInOne(all_in_one::AllInOneArgs),
    /// Provision (or delete) a range of numbered subscribers through the provisioning API.
    Provision(provision::ProvisionArgs),
}

#[derive(Subcommand)]
enum SipCommand {
    /// Judge each file as one UDP datagram and print one line per file:
    /// `FILE<TAB>accept<TAB>METHOD|STATUS` or `FILE<TAB>reject<TAB>STATUS|drop<TAB>REASON`.
    /// Exits non-zero only when a file cannot be read.
    Check {
        /// Files, each holding exactly one message.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Sip {
            command: SipCommand::Check { files },
        } => sip_check::run(&files),
        Command::Sprout(command) => sprout::run_command(command),
        Command::Homestead(command) => homestead::run(&command),
        Command::AllInOne(args) => all_in_one::run(args),
        Command::Provision(args) => provision::run(&args),
    }
}
