//! `ferrolb`: ferrolb on plain Linux hosts. `ferrolb standalone --config DIR` assigns addresses
//! to the Services described in DIR, keeps them across restarts in a state file, and picks up
//! edits to DIR while it runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use ferrolb_allocator::StalePolicy;
use ferrolb_standalone::announce::{self, HostSettings};
use ferrolb_standalone::config_dir::ConfigDir;
use ferrolb_standalone::engine::{Engine, Step};
use ferrolb_standalone::explain;
use ferrolb_standalone::state;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Stale {
    /// Keep an address the config no longer covers, and report it.
    Keep,
    /// Give the Service a new address.
    Reassign,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    /// Words, one line per fact.
    Text,
    /// The same as JSON.
    Json,
}

impl Stale {
    fn policy(self) -> StalePolicy {
        match self {
            Stale::Keep => StalePolicy::Keep,
            Stale::Reassign => StalePolicy::Reassign,
        }
    }
}

#[derive(Debug, Parser)]
#[command(version, about = "ferrolb without Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert MetalLB's configuration (metallb.io objects) to ferrolb.io objects: YAML on
    /// standard output, and on standard error a line for every object, and for every field
    /// that does not carry over and why. Services need no change.
    Migrate {
        /// YAML files with MetalLB objects (`-`: standard input).
        files: Vec<PathBuf>,
        /// Read MetalLB's objects from the cluster instead, with kubectl.
        #[arg(long, conflicts_with = "files")]
        from_cluster: bool,
        /// The kubectl to run for --from-cluster (its usual flags and KUBECONFIG apply).
        #[arg(long, default_value = "kubectl")]
        kubectl: PathBuf,
        /// MetalLB's namespace, for --from-cluster.
        #[arg(long, default_value = "metallb-system")]
        metallb_namespace: String,
        /// ferrolb's namespace: where the objects go.
        #[arg(long, default_value = "ferrolb-system")]
        namespace: String,
    },
    /// Why a Service's address is pending, stale or announced: which pool and why, who
    /// announces it over ARP/NDP and BGP, and the state of those sessions. Reads the cluster
    /// through kubectl (also installed as `kubectl ferrolb`: link this binary as
    /// `kubectl-ferrolb` on PATH), or a standalone directory with --config.
    Explain {
        /// The Service: NAME (in --namespace) or NAMESPACE/NAME.
        service: String,
        /// The Service's namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Words, or JSON.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
        /// Explain from a standalone config directory (and --state) instead of a cluster.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The standalone state file, with --config.
        #[arg(
            long,
            default_value = "/var/lib/ferrolb/state.json",
            requires = "config"
        )]
        state: PathBuf,
        /// The kubectl to run (its usual KUBECONFIG applies).
        #[arg(long, default_value = "kubectl")]
        kubectl: PathBuf,
        /// ferrolb's namespace in the cluster.
        #[arg(long, default_value = "ferrolb-system")]
        ferrolb_namespace: String,
        /// The loadBalancerClass the controller serves (its --lb-class), if any.
        #[arg(long)]
        lb_class: Option<String>,
        /// The stale policy the controller (or host) runs with.
        #[arg(long, value_enum, default_value = "keep")]
        stale_policy: Stale,
    },
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
        /// Announce from this host, as this Node (a Node object of that name belongs in DIR).
        /// Without it, addresses are only assigned and printed.
        #[arg(long)]
        node: Option<String>,
        /// UDP address (this host's) for membership between the hosts.
        #[arg(long, requires = "node")]
        membership_addr: Option<std::net::SocketAddr>,
        /// Other hosts' membership addresses, comma-separated.
        #[arg(long, value_delimiter = ',', requires = "node")]
        membership_seeds: Vec<std::net::SocketAddr>,
        /// File holding the secret shared by every host.
        #[arg(long, requires = "node")]
        membership_secret_file: Option<PathBuf>,
        #[command(flatten)]
        l2_flags: ferrolb_announce::l2::flags::L2Flags,
        /// TCP port on which BGP peers' connections are accepted, on every address of this
        /// host (only from configured peers); 0: only connect.
        #[arg(long, default_value_t = 179, requires = "node")]
        bgp_listen_port: u16,
    },
}

/// A standalone directory and state file, as `explain` reads them.
fn read_directory(
    dir: &std::path::Path,
    state_file: &std::path::Path,
    policy: StalePolicy,
) -> Result<(explain::World, Vec<String>), String> {
    let scan = ConfigDir::new(dir)
        .scan()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut notes: Vec<String> = scan.errors.iter().map(|e| e.to_string()).collect();
    let loaded = state::load(state_file);
    notes.extend(loaded.warnings.iter().map(|w| w.to_string()));
    let world = explain::World {
        objects: scan.objects,
        source: explain::Source::Standalone { held: loaded.state },
        stale_policy: policy,
    };
    Ok((world, notes))
}

fn report(step: &Step) {
    let verdicts = &step.verdicts;
    for object in verdicts.refused() {
        println!("refused  {object}: {}", verdicts.verdict(object).1);
    }
    for note in &verdicts.notes {
        println!("note     {}: {}: {}", note.object, note.field, note.reason);
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

/// A BGP session's state for the output, with why it is down and the last NOTIFICATION.
fn session_line(s: &ferrolb_announce::bgp::SessionStatus) -> String {
    let mut line = format!("{:?}", s.state);
    if !s.is_up()
        && let Some(e) = &s.last_error
    {
        line.push_str(&format!(" (last error: {e})"));
    }
    if let Some(n) = &s.last_notification {
        line.push_str(&format!(" (last NOTIFICATION {n})"));
    }
    line
}

/// `ferrolb migrate`: the YAML to stdout, the report to stderr.
fn migrate(
    files: &[PathBuf],
    from_cluster: bool,
    kubectl: &std::path::Path,
    metallb_namespace: &str,
    namespace: &str,
) -> ExitCode {
    use ferrolb_standalone::migrate as input;
    let read = if from_cluster {
        input::read_cluster(kubectl, metallb_namespace)
    } else if files.is_empty() {
        Err("name YAML files (or -), or use --from-cluster".into())
    } else {
        input::read_files(files).map(|t| (t, Vec::new()))
    };
    let (text, notes) = match read {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match ferrolb_config::migrate::migrate(&text, namespace) {
        Ok(m) => {
            print!("{}", m.yaml);
            for note in notes {
                eprintln!("{note}");
            }
            for line in &m.report {
                eprintln!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // The announcer's own log lines (sessions, NOTIFICATIONs, membership, responder) to stderr;
    // the decisions themselves are printed to stdout below.
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let command = Cli::parse().command;
    if let Command::Migrate {
        files,
        from_cluster,
        kubectl,
        metallb_namespace,
        namespace,
    } = command
    {
        return migrate(
            &files,
            from_cluster,
            &kubectl,
            &metallb_namespace,
            &namespace,
        );
    }
    if let Command::Explain {
        service,
        namespace,
        output,
        config,
        state,
        kubectl,
        ferrolb_namespace,
        lb_class,
        stale_policy,
    } = command
    {
        let (namespace, name) = match service.split_once('/') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => (namespace, service),
        };
        let read = match config {
            Some(dir) => read_directory(&dir, &state, stale_policy.policy()),
            None => ferrolb_standalone::kubectl::read_world(
                &kubectl,
                &namespace,
                &ferrolb_namespace,
                lb_class,
                stale_policy.policy(),
            ),
        };
        let (world, notes) = match read {
            Ok(w) => w,
            Err(e) => {
                eprintln!("ferrolb explain: {e}");
                return ExitCode::FAILURE;
            }
        };
        for n in notes {
            eprintln!("note: {n}");
        }
        return match explain::explain(&world, &namespace, &name) {
            Ok(e) => {
                match output {
                    Output::Text => print!("{}", e.text()),
                    Output::Json => match serde_json::to_string_pretty(&e) {
                        Ok(j) => println!("{j}"),
                        Err(err) => {
                            eprintln!("ferrolb explain: {err}");
                            return ExitCode::FAILURE;
                        }
                    },
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ferrolb explain: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Command::Standalone {
        config,
        state: state_file,
        once,
        interval_ms,
        stale_policy,
        node,
        membership_addr,
        membership_seeds,
        membership_secret_file,
        l2_flags,
        bgp_listen_port,
    } = command
    else {
        return ExitCode::FAILURE;
    };
    let mut announcer = match node {
        None => None,
        Some(node) => {
            let (Some(addr), Some(secret_file)) = (membership_addr, membership_secret_file) else {
                eprintln!("error: --node needs --membership-addr and --membership-secret-file");
                return ExitCode::FAILURE;
            };
            let secret = match std::fs::read(&secret_file) {
                Ok(s) if !s.trim_ascii().is_empty() => s.trim_ascii().to_vec(),
                Ok(_) => {
                    eprintln!("error: {} is empty", secret_file.display());
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", secret_file.display());
                    return ExitCode::FAILURE;
                }
            };
            let router_id = match addr.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            };
            Some(announce::driver(HostSettings {
                node,
                membership: addr,
                seeds: membership_seeds,
                secret,
                router_id,
                burst: l2_flags.burst(),
                quorum: l2_flags.l2_quorum,
                bgp_listen_port,
            }))
        }
    };
    // SIGTERM and SIGINT end the loop, so the host leaves the membership gracefully.
    let (mut term, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: cannot watch for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stop = false;
    let policy = stale_policy.policy();
    let loaded = state::load(&state_file);
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}; continuing from the previous good state");
    }
    let mut held = loaded.state;
    let mut dir = ConfigDir::new(&config);
    let mut engine = Engine::new(policy);
    let mut first = true;
    let mut last_announced = Default::default();
    let mut last_sessions: BTreeMap<String, String> = BTreeMap::new();
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
                    if let (Some(a), Some(config)) = (announcer.as_mut(), engine.config()) {
                        let inputs = announce::inputs(&scan.objects, &step, config.clone());
                        match a.apply(inputs).await {
                            Ok(applied) => {
                                for e in &applied.peer_errors {
                                    eprintln!("error: BGP: {e}");
                                }
                            }
                            Err(e) => eprintln!("error: cannot announce: {e}"),
                        }
                    }
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
        if let Some(status) = announcer.as_ref().and_then(|a| a.status())
            && status.announced != last_announced
        {
            for (ip, interfaces) in &status.announced {
                let list: Vec<&str> = interfaces.iter().map(String::as_str).collect();
                println!("announcing {ip} on {}", list.join(","));
            }
            if status.announced.is_empty() {
                println!("announcing nothing (live hosts: {:?})", status.live);
            }
            last_announced = status.announced;
        }
        if let Some(a) = announcer.as_ref() {
            let sessions: BTreeMap<String, String> = a
                .bgp_status()
                .into_iter()
                .map(|(peer, s)| (peer, session_line(&s)))
                .collect();
            if sessions != last_sessions {
                for (peer, state) in &sessions {
                    println!("BGP session to {peer}: {state}");
                }
                last_sessions = sessions;
            }
        }
        if once || stop {
            if let Some(a) = announcer.take() {
                a.leave().await;
            }
            return ExitCode::SUCCESS;
        }
        // Sleep until the next scan, or a signal.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(interval_ms.max(50))) => {}
            _ = term.recv() => stop = true,
            _ = interrupt.recv() => stop = true,
        }
    }
}
