//! Where the control plane's binaries are: built from the pinned Go modules in `tools/` by
//! `scripts/build-tools.sh` into a per-machine cache (openssl from Debian).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::lab::{self, LabError};

/// The binaries a cluster runs.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `kube-apiserver`.
    pub apiserver: PathBuf,
    /// `kube-controller-manager`.
    pub controller_manager: PathBuf,
    /// `kube-proxy`.
    pub proxy: PathBuf,
    /// `kubectl`.
    pub kubectl: PathBuf,
    /// `helm`.
    pub helm: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
    /// `etcdctl`.
    pub etcdctl: PathBuf,
    /// Prometheus's `promtool` (the chart's alerting rules are evaluated with it).
    pub promtool: PathBuf,
    /// `openssl`, for the cluster's certificates.
    pub openssl: PathBuf,
    /// MetalLB's binaries and chart, when built (`scripts/build-tools.sh --metallb`).
    pub metallb: Option<MetallbTools>,
}

/// MetalLB, for the side-by-side benchmark.
#[derive(Clone, Debug)]
pub struct MetallbTools {
    /// Its controller.
    pub controller: PathBuf,
    /// Its speaker.
    pub speaker: PathBuf,
    /// Its Helm chart (`charts/metallb` of its module).
    pub chart: PathBuf,
}

/// The environment variable naming the directory with the Go-built binaries
/// (`scripts/test.sh` sets it to what `scripts/build-tools.sh` printed).
pub const TOOLS_BIN_ENV: &str = "FERROLB_TOOLS_BIN";

static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();

/// The tools, found once per process. Without `FERROLB_TOOLS_BIN`, runs
/// `scripts/build-tools.sh` (instant when its cache is warm; a cold build takes many minutes).
pub fn tools() -> Result<&'static Tools, String> {
    TOOLS.get_or_init(find).as_ref().map_err(Clone::clone)
}

fn find() -> Result<Tools, String> {
    let bin = match std::env::var_os(TOOLS_BIN_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => build()?,
    };
    let go_built = |name: &str| -> Result<PathBuf, String> {
        let p = bin.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "{} is missing (run scripts/build-tools.sh)",
                p.display()
            ))
        }
    };
    let debian = |name: &str, package: &str| -> Result<PathBuf, String> {
        lab::find_tool(name).ok_or_else(|| {
            format!(
                "{name} is not installed (Debian package {package}; scripts/test.sh installs it)"
            )
        })
    };
    Ok(Tools {
        apiserver: go_built("kube-apiserver")?,
        controller_manager: go_built("kube-controller-manager")?,
        proxy: go_built("kube-proxy")?,
        kubectl: go_built("kubectl")?,
        helm: go_built("helm")?,
        etcd: go_built("etcd")?,
        etcdctl: go_built("etcdctl")?,
        promtool: go_built("promtool")?,
        openssl: debian("openssl", "openssl")?,
        metallb: Some(MetallbTools {
            controller: bin.join("metallb-controller"),
            speaker: bin.join("metallb-speaker"),
            chart: bin.join("metallb-chart"),
        })
        .filter(|m| m.controller.is_file() && m.speaker.is_file() && m.chart.is_dir()),
    })
}

/// Runs the build script and returns the directory it printed last.
fn build() -> Result<PathBuf, String> {
    let script = workspace_root().join("scripts/build-tools.sh");
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| format!("{} printed no directory", script.display()))
}

/// The repository's root (for scripts, the chart and the CRDs).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A ferrolb binary (`ferrolb-controller`, `ferrolb-speaker`): from `$FERROLB_BIN_DIR` when set,
/// else the one built by the same cargo profile as the test (in the target directory; cargo
/// builds a package's binaries before its own integration tests only, scripts/test.sh builds the
/// workspace first).
pub fn ferrolb_binary(name: &str) -> Result<PathBuf, LabError> {
    // Binaries from elsewhere, e.g. the images' filesystems (scripts/build-images.sh --mount).
    if let Some(dir) = std::env::var_os("FERROLB_BIN_DIR") {
        let p = PathBuf::from(dir).join(name);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LabError::Invalid(format!(
                "{} (FERROLB_BIN_DIR) does not exist",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe().map_err(|e| LabError::io("locating the test binary", e))?;
    // A test is target/<profile>/deps/<test>, a bin target/<profile>/<bin>: the binaries are in
    // target/<profile>.
    let dir = exe
        .parent()
        .ok_or_else(|| LabError::Invalid(format!("unexpected path {}", exe.display())))?;
    let profile_dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let p = profile_dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(LabError::Invalid(format!(
            "{} is not built (cargo build --workspace builds it)",
            p.display()
        )))
    }
}

/// Call first in every test that needs the control plane: `if !cluster::require_cluster() { return; }`.
///
/// True when the control plane can run here. Otherwise, with `CI=true` it panics (such tests
/// must fail, not skip, in CI); without, it prints `skipping: <reason>` and returns false.
pub fn require_cluster() -> bool {
    let reason = match tools() {
        Ok(_) => return true,
        Err(e) => e,
    };
    if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        panic!("the Kubernetes control plane cannot run and CI=true forbids skipping: {reason}");
    }
    eprintln!(
        "skipping: Kubernetes control plane unavailable: {reason} (set CI=true to make this fail)"
    );
    false
}
