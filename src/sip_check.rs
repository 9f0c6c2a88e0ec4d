//! `whitewater sip check`: the parser's verdict on files, in a format other tools read.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sip::Verdict;

pub(crate) fn run(files: &[PathBuf]) -> ExitCode {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut unreadable = false;
    for file in files {
        match std::fs::read(file) {
            Ok(bytes) => {
                let line = verdict_line(file, &bytes);
                if writeln!(out, "{line}").is_err() {
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("whitewater: cannot read {}: {e}", file.display());
                unreadable = true;
            }
        }
    }
    if unreadable {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn verdict_line(file: &Path, datagram: &[u8]) -> String {
    let name = file.display();
    match sip::inspect(datagram) {
        Verdict::Request(method) => format!("{name}\taccept\t{method}"),
        Verdict::Response(code) => format!("{name}\taccept\t{code}"),
        Verdict::Reject { status, reason } => {
            let status = status.map_or_else(|| "drop".to_owned(), |s| s.to_string());
            format!("{name}\treject\t{status}\t{reason}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_formats() {
        let f = Path::new("m.dat");
        let ok = b"OPTIONS sip:a@b.c SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:x@y>;tag=1\r\nTo: <sip:a@b.c>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(verdict_line(f, ok), "m.dat\taccept\tOPTIONS");
        assert_eq!(
            verdict_line(f, b"OPTIONS sip:a@b.c SIP/3.0\r\n\r\n"),
            "m.dat\treject\t505\tSIP version not supported"
        );
        assert_eq!(
            verdict_line(f, b"SIP/2.0 999 Odd\r\n\r\n"),
            "m.dat\treject\tdrop\tstatus code outside 100-699"
        );
    }
}
