//! `lab demo [--ferrolb PATH]`: runs the README demo in the network lab (root needed).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("demo") {
        eprintln!("usage: lab demo [--ferrolb PATH]");
        return ExitCode::from(2);
    }
    let mut ferrolb = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ferrolb")))
        .unwrap_or_else(|| PathBuf::from("ferrolb"));
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--ferrolb", Some(path)) => ferrolb = PathBuf::from(path),
            _ => {
                eprintln!("usage: lab demo [--ferrolb PATH]");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(reason) = ferrolb_tests::lab::lab_unavailable() {
        eprintln!("the demo needs the network lab: {reason}");
        return ExitCode::FAILURE;
    }
    if !ferrolb.exists() {
        eprintln!(
            "no ferrolb binary at {} (build it: cargo build -p ferrolb-standalone)",
            ferrolb.display()
        );
        return ExitCode::FAILURE;
    }
    match ferrolb_tests::demo::run(&ferrolb, &mut std::io::stdout()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
