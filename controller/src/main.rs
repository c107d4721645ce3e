//! `ferrolb-controller`: assigns external IPs to LoadBalancer Services from ferrolb.io pools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ferrolb_allocator::StalePolicy;
use ferrolb_controller::leader::{self, LeaseSettings, Term};
use ferrolb_controller::membership_secret;
use ferrolb_controller::metrics::Metrics;
use ferrolb_controller::reconciler::{self, Settings};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Stale {
    /// Keep an address that config no longer covers, and report it.
    Keep,
    /// Give the Service a new address from the current pools.
    Reassign,
}

/// Assigns external IPs from ferrolb.io IPAddressPools to LoadBalancer Services.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Namespace holding the ferrolb config objects and the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "ferrolb-system")]
    namespace: String,
    /// Handle only Services with this loadBalancerClass; empty: only Services without a class.
    #[arg(long, env = "FERROLB_LB_CLASS", default_value = "")]
    lb_class: String,
    /// What happens to an address that the config no longer covers.
    #[arg(long, value_enum, default_value = "keep")]
    stale_policy: Stale,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:7472")]
    metrics_addr: SocketAddr,
    /// PEM certificate chain for serving the metrics endpoints over HTTPS (with
    /// --metrics-tls-key); reloaded when the file changes. Without it: plain HTTP.
    #[arg(long, requires = "metrics_tls_key")]
    metrics_tls_cert: Option<PathBuf>,
    /// PEM private key of --metrics-tls-cert.
    #[arg(long, requires = "metrics_tls_cert")]
    metrics_tls_key: Option<PathBuf>,
    /// Elect a leader through a Lease so several replicas can run; only the leader writes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "ferrolb-controller")]
    lease_name: String,
    /// Seconds the other replicas wait, after they last saw the lease renewed, before taking it
    /// over.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Seconds the leader keeps writing without a successful renewal; shorter than
    /// --lease-duration, so it has stopped before another replica takes over.
    #[arg(long, default_value_t = 10)]
    lease_renew_deadline: u64,
    /// Seconds between lease renewals and retries.
    #[arg(long, default_value_t = 2)]
    lease_retry: u64,
    /// This replica's name (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "ferrolb-controller")]
    pod_name: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: ferrolb_kubernetes::logging::LogFormat,
    /// Create this Secret (in --namespace) with a random membership key for the speakers if it
    /// does not exist; an existing Secret is never changed. Empty: create nothing.
    #[arg(long, env = "FERROLB_MEMBERSHIP_SECRET_NAME", default_value = "")]
    membership_secret_name: String,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

/// One thread is plenty: the reconciler is a single loop and the rest waits on the network.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    ferrolb_kubernetes::logging::init(args.log_format);
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
            tracing::error!(error = %e, "cannot reach the Kubernetes API (no in-cluster config or kubeconfig)");
            return ExitCode::FAILURE;
        }
    };
    let metrics = Arc::new(Metrics::new());
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (leader_tx, leader_rx) = watch::channel(!args.leader_elect);
    let term = if args.leader_elect {
        Term::ended()
    } else {
        Term::always()
    };

    let mut tasks = tokio::task::JoinSet::new();
    {
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        let addr = args.metrics_addr;
        tasks.spawn(async move {
            if let Err(e) = ferrolb_kubernetes::serve::serve(addr, metrics, tls, shutdown).await {
                tracing::error!(error = %e, %addr, "metrics server failed");
            }
        });
    }
    if args.leader_elect {
        let settings = LeaseSettings {
            name: args.lease_name.clone(),
            namespace: args.namespace.clone(),
            identity: args.pod_name.clone(),
            lease_duration: Duration::from_secs(args.lease_duration),
            renew_deadline: Duration::from_secs(args.lease_renew_deadline),
            retry_period: Duration::from_secs(args.lease_retry),
        };
        if let Err(e) = settings.check() {
            tracing::error!("leader election: {e}");
            return ExitCode::FAILURE;
        }
        let api: Api<Lease> = Api::namespaced(client.clone(), &args.namespace);
        tasks.spawn(leader::run(
            api,
            settings,
            leader_tx,
            term.clone(),
            shutdown.clone(),
        ));
    }
    if !args.membership_secret_name.is_empty() {
        tasks.spawn(membership_secret::run(
            client.clone(),
            args.namespace.clone(),
            args.membership_secret_name.clone(),
            shutdown.clone(),
        ));
    }
    let settings = Settings {
        namespace: args.namespace.clone(),
        lb_class: Some(args.lb_class.clone()).filter(|c| !c.is_empty()),
        stale_policy: match args.stale_policy {
            Stale::Keep => StalePolicy::Keep,
            Stale::Reassign => StalePolicy::Reassign,
        },
        instance: args.pod_name.clone(),
        term,
        ..Settings::default()
    };
    tasks.spawn(reconciler::run(
        client,
        settings,
        metrics,
        leader_rx,
        shutdown.clone(),
    ));

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    // Give the elector a moment to release the lease so another replica takes over at once.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    ExitCode::SUCCESS
}
