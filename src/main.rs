//! `whitewater`: one binary, a subcommand per role.

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

#[derive(Subcommand)]
enum Command {
    /// SIP message tools.
    Sip {
        #[command(subcommand)]
        command: SipCommand,
    },
    /// The SIP engine: a transaction-stateful proxy on one pinned core per CPU listed
    /// (with no home domain configured it forwards by Route or Request-URI, record-routing).
    Sprout(sprout::SproutArgs),
    /// Every role on one host. Today: the SIP engine, as `sprout`; the other roles join as
    /// they land.
    AllInOne(sprout::SproutArgs),
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
    match Cli::parse().command {
        Command::Sip {
            command: SipCommand::Check { files },
        } => sip_check::run(&files),
        Command::Sprout(args) | Command::AllInOne(args) => sprout::run(args),
    }
}
