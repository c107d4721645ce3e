//! `ferrolb`: ferrolb on plain Linux hosts. `ferrolb standalone --config DIR` assigns addresses
//! to the Services described in DIR, keeps them across restarts in a state file, and picks up
//! edits to DIR while it runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use ferrolb_controller::allocator::StalePolicy;
use ferrolb_standalone::config_dir::ConfigDir;
use ferrolb_standalone::engine::{Engine, Step};
use ferrolb_standalone::state;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Stale {
    /// Keep an address the config no longer covers, and report it.
    Keep,
    /// Give the Service a new address.
    Reassign,
}

#[derive(Debug, Parser)]
#[command(version, about = "ferrolb without Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Assign addresses to the Services of a directory of YAML, and keep them.
    Standalone {
        /// Directory of YAML files: IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer,
        /// BFDProfile, Community, Secret, Service and Node objects.
        #[arg(long)]
        config: PathBuf,
        /// Where assignments are kept across restarts.
        #[arg(long, default_value = "/var/lib/ferrolb/state.json")]
        state: PathBuf,
        /// Decide once, print, save and exit.
        #[arg(long)]
        once: bool,
        /// How often to look for edits, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// What happens to an address the config no longer covers.
        #[arg(long, value_enum, default_value = "keep")]
        stale_policy: Stale,
    },
}

fn report(step: &Step) {
    if step.no_config {
        println!("no valid configuration yet: every Service waits");
    }
    if let Some(errors) = &step.config_errors {
        println!("configuration refused, the last good one stays in force: {errors}");
    }
    for (key, a) in &step.assigned {
        let ips: Vec<String> = a.ips.iter().map(|ip| ip.to_string()).collect();
        let stale = if a.stale.is_empty() {
            String::new()
        } else {
            format!(" (stale: {:?})", a.stale)
        };
        println!("assigned {key} {} (pool {}){stale}", ips.join(","), a.pool);
    }
    for (key, refusal) in &step.refused {
        println!("pending  {key}: {refusal}");
    }
}

fn main() -> ExitCode {
    let Command::Standalone {
        config,
        state: state_file,
        once,
        interval_ms,
        stale_policy,
    } = Cli::parse().command;
    let policy = match stale_policy {
        Stale::Keep => StalePolicy::Keep,
        Stale::Reassign => StalePolicy::Reassign,
    };
    let loaded = state::load(&state_file);
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}; continuing from the previous good state");
    }
    let mut held = loaded.state;
    let mut dir = ConfigDir::new(&config);
    let mut engine = Engine::new(policy);
    let mut first = true;
    loop {
        match dir.scan() {
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", config.display());
                if once || first {
                    return ExitCode::FAILURE;
                }
            }
            Ok(scan) => {
                for e in &scan.errors {
                    eprintln!("error: {e} (its last good content stays in force)");
                }
                if scan.changed || first {
                    let step = engine.step(&scan.objects, &held);
                    report(&step);
                    if step.state != held {
                        match state::save(&state_file, &step.state) {
                            Ok(()) => held = step.state,
                            Err(e) => eprintln!("error: {e}"),
                        }
                    }
                }
            }
        }
        first = false;
        if once {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(interval_ms.max(50)));
    }
}
