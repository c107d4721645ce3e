//! TLS for the metrics and health endpoints, from a PEM certificate and key on disk.
//!
//! The certificate follows its files: each handshake checks their modification times and
//! lengths and reloads them when they changed, so a rotated Secret (cert-manager, a kubelet-updated volume)
//! takes effect without a restart. A reload that fails keeps the last good pair, is logged once
//! and is retried at the next handshake; only the first load can fail the start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where the certificate chain and its private key are, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (`tls.crt` of a Kubernetes TLS Secret).
    pub cert: PathBuf,
    /// Private key, PKCS#8, PKCS#1 or SEC1 (`tls.key`).
    pub key: PathBuf,
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No certificate in the certificate file.
    #[error("{path}: no PEM certificate in it")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The PEM could not be parsed.
    #[error("{path}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The key is of an unsupported type, or does not belong to the certificate.
    #[error("key {key} for certificate {cert}: {detail}")]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// What tells a file changed: its modification time and length (a rewrite within one clock tick
/// usually changes the length).
type Stamp = (SystemTime, u64);

fn stamp(path: &Path) -> Result<Stamp, TlsError> {
    std::fs::metadata(path)
        .and_then(|m| Ok((m.modified()?, m.len())))
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Reads and checks the pair: the chain parses, the key parses and matches the leaf.
pub fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::Pem {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let cert_pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&files.cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| pem_error(&files.key, e))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Key {
        cert: files.cert.clone(),
        key: files.key.clone(),
        detail: e.to_string(),
    })
}

/// The current pair, the stamps it was read at, and the stamps of a failed reload already
/// reported (so a broken pair is logged once, yet retried at every handshake until it loads).
#[derive(Debug)]
struct Loaded {
    stamps: (Stamp, Stamp),
    key: Arc<CertifiedKey>,
    reported: Option<(Stamp, Stamp)>,
}

/// Serves the pair from [`TlsFiles`], reloading it when the files change.
#[derive(Debug)]
pub struct FileCertResolver {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Mutex<Loaded>,
}

impl FileCertResolver {
    /// Loads the pair now; an error here is the caller's to report (bad flags, missing Secret).
    pub fn new(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let stamps = (stamp(&files.cert)?, stamp(&files.key)?);
        let key = Arc::new(load(&files, &provider)?);
        Ok(FileCertResolver {
            files,
            provider,
            current: Mutex::new(Loaded {
                stamps,
                key,
                reported: None,
            }),
        })
    }

    /// The pair to use now: reloaded first if either file changed since the last load.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let stamps = match (stamp(&self.files.cert), stamp(&self.files.key)) {
            (Ok(c), Ok(k)) => (c, k),
            // Mid-rotation or removed: keep serving what we have.
            _ => return current.key.clone(),
        };
        if stamps != current.stamps {
            match load(&self.files, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert.display(), "reloaded the metrics TLS certificate");
                    *current = Loaded {
                        stamps,
                        key: Arc::new(key),
                        reported: None,
                    };
                }
                // Retried at the next handshake (the files may be half written); reported once.
                Err(e) if current.reported != Some(stamps) => {
                    tracing::warn!(error = %e, "keeping the previous metrics TLS certificate");
                    current.reported = Some(stamps);
                }
                Err(_) => {}
            }
        }
        current.key.clone()
    }
}

impl ResolvesServerCert for FileCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A TLS 1.2/1.3 server configuration (ring, no client certificates, HTTP/1.1) whose
/// certificate follows `files`.
pub fn server_config(files: TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = FileCertResolver::new(files, provider.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server configuration for `--metrics-tls-cert`/`--metrics-tls-key`: `None` (plain HTTP)
/// when neither is given. Clap makes the flags require each other.
pub fn from_flags(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => server_config(TlsFiles { cert, key }).map(Some),
        _ => Ok(None),
    }
}
