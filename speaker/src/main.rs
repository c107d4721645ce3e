//! `ferrolb-speaker`: the DaemonSet that announces LoadBalancer addresses from its Node
//! (layer 2: ARP/NDP, one elected live node per address).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use ferrolb_announce::l2::flags::L2Flags;
use ferrolb_announce::l2::iface::DEFAULT_EXCLUDE;
use ferrolb_speaker::metrics::SpeakerMetrics;
use ferrolb_speaker::{Settings, run};
use tokio::sync::watch;

/// Announces ferrolb LoadBalancer addresses from this Node.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// This Node's name (from the downward API).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Namespace of the ferrolb config objects.
    #[arg(long, env = "POD_NAMESPACE", default_value = "ferrolb-system")]
    namespace: String,
    /// Handle only Services with this loadBalancerClass; empty: only Services without a class.
    #[arg(long, env = "FERROLB_LB_CLASS", default_value = "")]
    lb_class: String,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:7473")]
    metrics_addr: SocketAddr,
    /// PEM certificate chain for serving the metrics endpoints over HTTPS (with
    /// --metrics-tls-key); reloaded when the file changes. Without it: plain HTTP.
    #[arg(long, requires = "metrics_tls_key")]
    metrics_tls_cert: Option<PathBuf>,
    /// PEM private key of --metrics-tls-cert.
    #[arg(long, requires = "metrics_tls_cert")]
    metrics_tls_key: Option<PathBuf>,
    /// UDP port for membership between speakers (on the Node's InternalIP).
    #[arg(long, default_value_t = 7946)]
    membership_port: u16,
    /// File holding the membership secret shared by every speaker.
    #[arg(long)]
    membership_secret_file: PathBuf,
    /// Interface name globs never announced on (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude_interfaces: Option<Vec<String>>,
    /// Announce even from Nodes labelled node.kubernetes.io/exclude-from-external-load-balancers.
    #[arg(long)]
    ignore_exclude_lb: bool,
    #[command(flatten)]
    l2_flags: L2Flags,
    /// Announce over ARP/NDP.
    #[arg(long, env = "FERROLB_L2_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    l2_enabled: bool,
    /// Announce over BGP.
    #[arg(long, env = "FERROLB_BGP_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    bgp_enabled: bool,
    /// TCP port on which BGP peers' connections are accepted, on every address of the node
    /// (only from configured peers); 0: only connect.
    #[arg(long, default_value_t = 179)]
    bgp_listen_port: u16,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: ferrolb_kubernetes::logging::LogFormat,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    ferrolb_kubernetes::logging::init(args.log_format);
    let secret = match std::fs::read(&args.membership_secret_file) {
        Ok(s) if !s.trim_ascii().is_empty() => s.trim_ascii().to_vec(),
        Ok(_) => {
            tracing::error!(file = %args.membership_secret_file.display(), "the membership secret is empty");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            tracing::error!(file = %args.membership_secret_file.display(), error = %e, "cannot read the membership secret");
            return ExitCode::FAILURE;
        }
    };
    let tls = match ferrolb_kubernetes::tls::from_flags(
        args.metrics_tls_cert.clone(),
        args.metrics_tls_key.clone(),
    ) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve the metrics endpoints over TLS");
            return ExitCode::FAILURE;
        }
    };
    let client = match ferrolb_kubernetes::client::connect().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the Kubernetes API");
            return ExitCode::FAILURE;
        }
    };
    let (shutdown_tx, shutdown) = watch::channel(false);
    let speaker_metrics = Arc::new(SpeakerMetrics::default());
    tokio::spawn(ferrolb_kubernetes::serve::serve(
        args.metrics_addr,
        speaker_metrics.clone(),
        tls,
        shutdown.clone(),
    ));
    let settings = Settings {
        node: args.node_name,
        namespace: args.namespace,
        lb_class: Some(args.lb_class).filter(|c| !c.is_empty()),
        membership_port: args.membership_port,
        secret,
        exclude: args
            .exclude_interfaces
            .unwrap_or_else(|| DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect()),
        ignore_exclude_label: args.ignore_exclude_lb,
        metrics: Some(speaker_metrics),
        burst: args.l2_flags.burst(),
        l2: args.l2_enabled,
        bgp: args.bgp_enabled,
        bgp_listen_port: args.bgp_listen_port,
        l2_quorum: args.l2_flags.l2_quorum,
    };
    let mut task = tokio::spawn(run(client, settings, shutdown));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
        ended = &mut task => {
            tracing::error!("speaker stopped: {ended:?}");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!("shutting down: leaving the membership so another node takes over");
    let _ = shutdown_tx.send(true);
    match task.await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "speaker failed");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
