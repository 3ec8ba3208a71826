//! `make-test-mail --from A --to B [--to C] --out DIR`: writes one `.eml`
//! per case of `chatmail_e2ee::testmail` and `DIR/manifest.json`, a list of
//! `{"name", "file", "outgoing", "incoming", "mail_from", "rcpt_to",
//! "top_level"}` with `"accept"`/`"reject"` expectations (incoming:
//! recipients enforce E2EE).
//!
//! `make-test-mail --describe FILE...`: prints, as one JSON list, how
//! `mail-parser` reads each file's top level (`{"file", "top_level"}`),
//! for comparing stored messages with another parser.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: make-test-mail --from ADDR --to ADDR [--to ADDR ...] --out DIR";

fn describe(files: &[String]) -> ExitCode {
    let mut out = Vec::new();
    for file in files {
        match std::fs::read(file) {
            Ok(raw) => out.push(serde_json::json!({
                "file": file,
                "top_level": chatmail_e2ee::testmail::top_level(&raw),
            })),
            Err(e) => {
                eprintln!("make-test-mail: {file}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}", serde_json::Value::Array(out));
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(("--describe", files)) = args.split_first().map(|(f, r)| (f.as_str(), r)) {
        return describe(files);
    }
    let mut from = None;
    let mut to = Vec::new();
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--from", Some(v)) => from = Some(v),
            ("--to", Some(v)) => to.push(v),
            ("--out", Some(v)) => out = Some(PathBuf::from(v)),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(from), Some(out), false) = (from, out, to.is_empty()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = chatmail_e2ee::testmail::generate(&from, &to)
        .and_then(|mails| chatmail_e2ee::testmail::write_dir(&mails, &out).map(|()| mails.len()));
    match result {
        Ok(n) => {
            println!("wrote {n} messages and manifest.json to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make-test-mail: {e}");
            ExitCode::FAILURE
        }
    }
}
