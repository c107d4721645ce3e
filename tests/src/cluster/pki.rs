//! The test clusters' certificates and keys, made with `openssl` once per test process: a CA, the
//! API server's serving certificate (for 127.0.0.1 and the in-cluster names) and the
//! service-account signing key pair. ECDSA P-256 keys: fast to make, accepted by every party.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::lab::{self, LabError};

/// Paths of the PEM files.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA certificate (clients trust it; it also signs nothing else here).
    pub ca_cert: PathBuf,
    /// The CA key (kube-controller-manager's cluster signing key).
    pub ca_key: PathBuf,
    /// The API server's serving certificate.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// The service-account token signing key.
    pub sa_key: PathBuf,
    /// Its public half (the API server verifies tokens with it).
    pub sa_pub: PathBuf,
}

static PKI: OnceLock<Result<Pki, String>> = OnceLock::new();

/// The process's PKI, made on first use in `dir_for_process()`.
pub fn pki(openssl: &Path) -> Result<&'static Pki, LabError> {
    PKI.get_or_init(|| make(openssl, &super::process_dir("pki")).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| LabError::Invalid(format!("making the cluster certificates: {e}")))
}

fn make(openssl: &Path, dir: &Path) -> Result<Pki, LabError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let p = |name: &str| dir.join(name);
    let s = |path: &Path| path.to_string_lossy().into_owned();
    let ossl = s(openssl);
    let run = |args: &[&str]| -> Result<(), LabError> {
        let mut argv = vec![ossl.as_str()];
        argv.extend_from_slice(args);
        lab::run_command_ok(&argv, Duration::from_secs(30)).map(drop)
    };
    let ec_key = |path: &Path| {
        run(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &s(path),
        ])
    };
    let pki = Pki {
        ca_cert: p("ca.crt"),
        ca_key: p("ca.key"),
        server_cert: p("apiserver.crt"),
        server_key: p("apiserver.key"),
        sa_key: p("sa.key"),
        sa_pub: p("sa.pub"),
    };
    ec_key(&pki.ca_key)?;
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &s(&pki.ca_key),
        "-subj",
        "/CN=ferrolb-test-ca",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        &s(&pki.ca_cert),
    ])?;
    ec_key(&pki.server_key)?;
    let csr = p("apiserver.csr");
    run(&[
        "req",
        "-new",
        "-key",
        &s(&pki.server_key),
        "-subj",
        "/CN=kube-apiserver",
        "-out",
        &s(&csr),
    ])?;
    let ext = p("apiserver.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,IP:::1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,\
         DNS:kubernetes.default,DNS:kubernetes.default.svc\n",
    )
    .map_err(|e| LabError::io(format!("writing {}", ext.display()), e))?;
    run(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&pki.ca_cert),
        "-CAkey",
        &s(&pki.ca_key),
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&pki.server_cert),
    ])?;
    ec_key(&pki.sa_key)?;
    run(&[
        "pkey",
        "-in",
        &s(&pki.sa_key),
        "-pubout",
        "-out",
        &s(&pki.sa_pub),
    ])?;
    Ok(pki)
}
