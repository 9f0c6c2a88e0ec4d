//! `whitewater provision`: bulk provisioning of numbered subscribers through the
//! provisioning API (`PUT`/`DELETE /subscribers/<impi>`), with a progress bar. Each
//! subscriber is one idempotent request, so re-running after an interruption finishes
//! the job without duplicating anything.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;

use crate::api_token::ApiTokenArgs;

/// Options of `whitewater provision`.
#[derive(Args, Debug)]
pub(crate) struct ProvisionArgs {
    /// Inclusive range of numbers, `6505550000-6505559999`; subscriber N gets the private
    /// identity `N@DOMAIN` and the public identity `sip:N@DOMAIN`.
    #[arg(long)]
    numbers: String,
    /// Domain of the identities (and digest realm).
    #[arg(long)]
    domain: String,
    /// File whose first line is the password every subscriber gets (kept off the command
    /// line so it does not show in `ps`).
    #[arg(long, required_unless_present = "delete")]
    password_file: Option<PathBuf>,
    /// Delete the subscribers instead (absent ones are skipped).
    #[arg(long)]
    delete: bool,
    /// The provisioning API.
    #[arg(long, default_value = "http://127.0.0.1:8889", env = "WW_PROV_URL")]
    server: String,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[command(flatten)]
    api_token: ApiTokenArgs,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a number"))
    };
    let (first, last) = (parse(first)?, parse(last)?);
    if first > last {
        return Err(format!("range {text} runs backwards"));
    }
    Ok((first, last))
}

pub(crate) fn run(args: &ProvisionArgs) -> ExitCode {
    match provision(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whitewater provision: {e}");
            ExitCode::FAILURE
        }
    }
}

fn provision(args: &ProvisionArgs) -> Result<(), String> {
    let (first, last) = parse_range(&args.numbers)?;
    let password = match &args.password_file {
        Some(path) if !args.delete => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let line = text.lines().next().unwrap_or("").to_owned();
            if line.is_empty() {
                return Err(format!(
                    "{} has no password on its first line",
                    path.display()
                ));
            }
            Some(line)
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(run_all(args, first, last, password))
}

async fn run_all(
    args: &ProvisionArgs,
    first: u64,
    last: u64,
    password: Option<String>,
) -> Result<(), String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = args.api_token.load()? {
        let mut value = reqwest::header::HeaderValue::from_str(&token.authorization())
            .map_err(|e| e.to_string())?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .map_err(|e| e.to_string())?;
    let total = last - first + 1;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} subscribers, {per_sec}, eta {eta}")
            .expect("static template"),
    );
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let base: Arc<str> = args.server.trim_end_matches('/').into();
    let password: Option<Arc<str>> = password.map(Into::into);
    let mut tasks = tokio::task::JoinSet::new();
    let mut failure = None;
    for number in first..=last {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("never closed");
        let (client, base, password, domain, delete, bar) = (
            client.clone(),
            Arc::clone(&base),
            password.clone(),
            args.domain.clone(),
            args.delete,
            bar.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let result = one(&client, &base, number, &domain, password.as_deref(), delete).await;
            bar.inc(1);
            result
        });
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
                failure.get_or_insert(e);
            }
        }
        if failure.is_some() {
            break;
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
            failure.get_or_insert(e);
        }
    }
    bar.finish();
    if let Some(e) = failure {
        return Err(format!(
            "{e} (everything acknowledged before it is kept; re-run to finish)"
        ));
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "whitewater provision: {} {total} subscribers in {seconds:.1} s ({:.0}/s)",
        if args.delete {
            "deleted"
        } else {
            "provisioned"
        },
        total as f64 / seconds.max(1e-9)
    );
    Ok(())
}

async fn one(
    client: &reqwest::Client,
    base: &str,
    number: u64,
    domain: &str,
    password: Option<&str>,
    delete: bool,
) -> Result<(), String> {
    let impi = format!("{number}@{domain}");
    let url = format!("{base}/subscribers/{}", impi.replace('@', "%40"));
    let request = if delete {
        client.delete(&url)
    } else {
        let body = serde_json::json!({ "impus": [format!("sip:{impi}")], "password": password });
        client
            .put(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let response = request.send().await.map_err(|e| format!("{impi}: {e}"))?;
    let status = response.status().as_u16();
    match status {
        200 | 201 | 204 => Ok(()),
        404 if delete => Ok(()),
        _ => Err(format!(
            "{impi}: {status} {}",
            response.text().await.unwrap_or_default().trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("6505550000-6505559999"),
            Ok((6_505_550_000, 6_505_559_999))
        );
        assert_eq!(parse_range("5"), Ok((5, 5)));
        assert!(parse_range("9-1").is_err());
        assert!(parse_range("a-1").is_err());
    }
}
