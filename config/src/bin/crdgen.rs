//! Writes one CRD YAML file per ferrolb kind into `deploy/crds/` (or the directory given).
//!
//! `cargo run -p ferrolb-config --bin crdgen` regenerates them; a test fails when they are stale.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(ferrolb_config::crdgen::default_dir);
    match ferrolb_config::crdgen::write_all(&dir) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("crdgen: {err}");
            ExitCode::FAILURE
        }
    }
}
