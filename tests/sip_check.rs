//! The `whitewater sip check` contract other tools depend on: one tab-separated line per file,
//! exit status 0 unless a file cannot be read.

use std::path::{Path, PathBuf};
use std::process::Command;

fn torture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dataplane/sip/tests/data/rfc4475")
}

fn check(files: &[PathBuf]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_whitewater"))
        .args(["sip", "check"])
        .args(files)
        .output()
        .expect("run whitewater");
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn one_line_per_file_in_the_documented_format() {
    let table = std::fs::read_to_string(torture_dir().join("expected.tsv")).expect("table");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let files: Vec<PathBuf> = rows
        .iter()
        .map(|r| torture_dir().join(r[1]).join(format!("{}.dat", r[0])))
        .collect();
    let (ok, stdout, _) = check(&files);
    assert!(ok);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), files.len());
    for ((line, file), row) in lines.iter().zip(&files).zip(&rows) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols[0], file.display().to_string());
        match cols[1] {
            "accept" => {
                assert_eq!(cols.len(), 3, "{line}");
                assert_ne!(row[2], "reject", "{line}");
            }
            "reject" => {
                assert_eq!(cols.len(), 4, "{line}");
                assert!(
                    cols[2] == "drop" || cols[2].parse::<u16>().is_ok(),
                    "{line}"
                );
                assert!(!cols[3].is_empty(), "a reason is given: {line}");
                assert_ne!(row[2], "accept", "{line}");
            }
            other => panic!("unexpected verdict {other} in {line}"),
        }
    }
    let find = |name: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("/{name}.dat\t")))
            .copied()
    };
    assert!(find("badvers").is_some_and(|l| l.contains("\treject\t505\t")));
    assert!(find("bigcode").is_some_and(|l| l.contains("\treject\tdrop\t")));
    assert!(find("unreason").is_some_and(|l| l.ends_with("\taccept\t200")));
    assert!(find("esc02").is_some_and(|l| l.ends_with("\taccept\tRE%47IST%45R")));
}

#[test]
fn unreadable_file_fails_after_judging_the_others() {
    let good = torture_dir().join("valid/zeromf.dat");
    let missing = torture_dir().join("valid/no-such-file.dat");
    let (ok, stdout, stderr) = check(&[missing.clone(), good]);
    assert!(!ok);
    assert!(stdout.ends_with("\taccept\tOPTIONS\n"), "{stdout}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}
