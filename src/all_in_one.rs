//! `whitewater all-in-one`: every role on one host. The SIP engine runs on its pinned
//! cores as the S-CSCF of the home domain; Homestead runs on a small tokio runtime beside
//! it, with the embedded store and demo subscribers put in place at every start, and the
//! S-CSCF asks it in process.

use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use clap::Args;

use crate::api_token::ApiTokenArgs;
use crate::homestead::HomesteadArgs;
use crate::sprout::{self, SproutArgs};

/// Options of `whitewater all-in-one`.
#[derive(Args, Debug)]
pub(crate) struct AllInOneArgs {
    #[command(flatten)]
    sprout: SproutArgs,
    #[command(flatten)]
    homestead: HomesteadArgs,
    /// Demo subscribers put in place at every start (0: none).
    #[arg(long, default_value_t = 10, env = "WW_DEMO_SUBSCRIBERS")]
    demo_subscribers: u64,
    /// Threads of the control-plane runtime (Homestead).
    #[arg(long, default_value_t = 1, env = "WW_CONTROL_THREADS")]
    control_threads: usize,
    #[command(flatten)]
    api_token: ApiTokenArgs,
}

pub(crate) fn run(args: AllInOneArgs) -> ExitCode {
    let checked = args
        .homestead
        .config(args.demo_subscribers, &args.api_token)
        .and_then(|config| Ok((config, args.sprout.management_token(&args.api_token)?)));
    let (config, management_token) = match checked {
        Ok(config) => config,
        Err(e) => {
            eprintln!("whitewater: {e}");
            return ExitCode::from(2);
        }
    };
    let embedded = args.homestead.embedded_store();
    let (started, outcome) = mpsc::channel();
    let threads = args.control_threads.max(1);
    let control = thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return drop(started.send(Err(e.to_string()))),
            };
            runtime.block_on(async move {
                match homestead::Homestead::start(config).await {
                    Ok(homestead) => {
                        eprintln!(
                            "whitewater: homestead API on http://{}, provisioning API on http://{}",
                            homestead.http, homestead.prov_http
                        );
                        // The embedded store needs no reactor: the S-CSCF calls it on its
                        // own core, with no thread hop. ScyllaDB's driver runs on tokio.
                        let handle = tokio::runtime::Handle::current();
                        let source = std::sync::Arc::clone(&homestead.source);
                        let client = if embedded {
                            homestead::HomesteadClient::in_process_direct(handle, source)
                        } else {
                            homestead::HomesteadClient::in_process(handle, source)
                        };
                        let _ = started.send(Ok(client));
                        if let Err(e) = homestead.join().await {
                            eprintln!("whitewater: homestead stopped: {e}");
                            std::process::exit(1);
                        }
                    }
                    Err(e) => drop(started.send(Err(e.to_string()))),
                }
            });
        });
    if let Err(e) = control {
        eprintln!("whitewater: cannot start the control plane: {e}");
        return ExitCode::FAILURE;
    }
    match outcome.recv() {
        Ok(Ok(client)) => {
            match args
                .sprout
                .scscf_config(args.homestead.home_domain(), client)
            {
                Ok(scscf) => sprout::run(args.sprout, Some((scscf, management_token))),
                Err(e) => {
                    eprintln!("whitewater: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Ok(Err(e)) => {
            eprintln!("whitewater: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("whitewater: the control plane stopped while starting");
            ExitCode::FAILURE
        }
    }
}
