//! The metrics endpoints over TLS: real handshakes with rustls clients against certificates made
//! by the `openssl` command, rotation by rewriting the files, and clear errors for bad files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_kubernetes::serve::{self, Exporter};
use ferrolb_kubernetes::tls::{self, TlsError, TlsFiles};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (Debian package openssl) must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA of its own (`dir/NAME-ca.crt`, what a client trusts) and a certificate it signed for
/// `localhost` / 127.0.0.1 with its key (`dir/NAME.{crt,key}`, what the server serves).
struct Pair {
    ca: PathBuf,
    files: TlsFiles,
}

fn make_cert(dir: &Path, name: &str) -> Pair {
    let p = |suffix: &str| dir.join(format!("{name}{suffix}"));
    let s = |path: &PathBuf| path.to_str().unwrap().to_owned();
    let (ca, ca_key, csr, ext) = (p("-ca.crt"), p("-ca.key"), p(".csr"), p(".ext"));
    let files = TlsFiles {
        cert: p(".crt"),
        key: p(".key"),
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509", "-days", "1", "-subj", "/CN=ferrolb test CA"];
    args.extend(ec);
    let (ca_s, ca_key_s) = (s(&ca), s(&ca_key));
    args.extend(["-keyout", &ca_key_s, "-out", &ca_s]);
    openssl(&args);
    let (csr_s, key_s, cert_s, ext_s) = (s(&csr), s(&files.key), s(&files.cert), s(&ext));
    let mut args = vec!["req", "-new", "-subj", "/CN=localhost"];
    args.extend(ec);
    args.extend(["-keyout", &key_s, "-out", &csr_s]);
    openssl(&args);
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        &csr_s,
        "-CA",
        &ca_s,
        "-CAkey",
        &ca_key_s,
        "-CAcreateserial",
        "-extfile",
        &ext_s,
        "-out",
        &cert_s,
    ]);
    Pair { ca, files }
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrolb-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// GET `path` over TLS trusting only `ca`; the whole response, or the error.
async fn get(port: u16, ca: &Path, path: &str) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut body)).await;
    match read {
        Ok(Ok(_)) => Ok(String::from_utf8_lossy(&body).into_owned()),
        // Close without close_notify after a complete response is fine for HTTP/1.1 + close.
        Ok(Err(_)) if !body.is_empty() => Ok(String::from_utf8_lossy(&body).into_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test]
async fn metrics_over_tls_follow_certificate_rotation() {
    let dir = tempdir("serve");
    let live = TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    let first = make_cert(&dir, "first");
    let second = make_cert(&dir, "second");
    std::fs::copy(&first.files.cert, &live.cert).unwrap();
    std::fs::copy(&first.files.key, &live.key).unwrap();

    let config = tls::server_config(live.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let m = Arc::new(Ready);
    let (stop, shutdown) = watch::channel(false);
    let server = tokio::spawn(serve::serve_on(listener, m, Some(config), shutdown));

    let text = get(port, &first.ca, "/metrics").await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("ferrolb_test_up"), "{text}");
    let ready = get(port, &first.ca, "/readyz").await.unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    // A client trusting another certificate is refused by its own verifier.
    assert!(get(port, &second.ca, "/metrics").await.is_err());

    // Plain HTTP on the TLS port gets no metrics.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("ferrolb_test_up"), "{answer}");

    // Rotation: the files are rewritten; the next handshake uses the new pair.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::copy(&second.files.cert, &live.cert).unwrap();
    std::fs::copy(&second.files.key, &live.key).unwrap();
    let text = get(port, &second.ca, "/metrics").await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(get(port, &first.ca, "/metrics").await.is_err());

    // A broken rewrite (a key that is not PEM) keeps the last good pair.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&live.key, "not a key").unwrap();
    let text = get(port, &second.ca, "/metrics").await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_are_refused_naming_the_file() {
    let dir = tempdir("errors");
    let a = make_cert(&dir, "a").files;
    let b = make_cert(&dir, "b").files;
    let err = |files: TlsFiles| tls::server_config(files).unwrap_err();

    // Missing file.
    let missing = dir.join("missing.crt");
    let e = err(TlsFiles {
        cert: missing.clone(),
        key: a.key.clone(),
    });
    assert!(
        matches!(&e, TlsError::Read { path, .. } if *path == missing),
        "{e}"
    );
    assert!(e.to_string().contains("missing.crt"), "{e}");

    // A certificate file without a certificate.
    let empty = dir.join("empty.crt");
    std::fs::write(&empty, "").unwrap();
    let e = err(TlsFiles {
        cert: empty,
        key: a.key.clone(),
    });
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");

    // A key that belongs to another certificate.
    let e = err(TlsFiles {
        cert: a.cert.clone(),
        key: b.key.clone(),
    });
    assert!(matches!(e, TlsError::Key { .. }), "{e}");
    assert!(
        e.to_string().contains("b.key") && e.to_string().contains("a.crt"),
        "{e}"
    );

    // Garbage as key.
    let junk = dir.join("junk.key");
    std::fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = err(TlsFiles {
        cert: a.cert.clone(),
        key: junk,
    });
    assert!(e.to_string().contains("junk.key"), "{e}");

    // Neither flag: plain HTTP, no error.
    assert!(tls::from_flags(None, None).unwrap().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A metrics source that is always ready.
struct Ready;

impl Exporter for Ready {
    fn encode(&self) -> String {
        "ferrolb_test_up 1\n".into()
    }
    fn is_ready(&self) -> bool {
        true
    }
}
