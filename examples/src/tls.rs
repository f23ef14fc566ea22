//! HTTPS for a listener: serve an axum [`Router`] over rustls from PEM certificate and key files,
//! or from a self-signed development certificate generated on first use.
//!
//! The Auth0 SDKs only speak `https://`, so the admin example's listener takes TLS from the
//! environment ([`TlsSetup::from_env`]); the gateway example can reuse the same two calls
//! ([`TlsSetup::from_env`] then [`serve`]).
//!
//! Why tokio-rustls and a hyper-util serve loop rather than `axum-server`: tokio-rustls, rustls
//! (on aws-lc-rs) and hyper-util are already in the workspace for the back-channel logout client
//! and the tests, are maintained by the rustls and hyper teams, and the loop is forty lines;
//! `axum-server` would add a crate (and its own rustls feature matrix) for the same loop.
//!
//! ```no_run
//! # async fn run(router: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
//! use keycard_examples::tls::{self, TlsSetup};
//!
//! let dir = std::path::Path::new("target/keycard-dev-tls");
//! let setup = TlsSetup::development(dir)?; // or TlsSetup::from_pem_files(cert, key)
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! tls::serve(listener, setup.acceptor(), router, std::future::pending()).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The names the development certificate is valid for.
pub const DEV_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A client that opens a connection and never finishes the handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file cannot be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A PEM file holds no certificate or no private key, or is not PEM.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refuses the certificate/key pair (a key that does not match, an unsupported type).
    #[error("the certificate and key are not usable: {0}")]
    Rustls(#[from] rustls::Error),
    /// The development certificate cannot be generated.
    #[error("cannot generate the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Only one of the certificate and key variables is set, or the mode is unknown.
    #[error("{0}")]
    Config(String),
}

/// A TLS server configuration and where its certificate came from.
#[derive(Clone, Debug)]
pub struct TlsSetup {
    config: Arc<rustls::ServerConfig>,
    /// The certificate file (PEM) a client must trust: the development certificate, or the
    /// operator's own.
    pub cert_path: PathBuf,
    /// Whether the certificate is the self-signed development one (print how to trust it).
    pub development: bool,
}

impl TlsSetup {
    /// TLS from the environment, variables named after `prefix` (e.g. `KEYCARD_ADMIN_TLS`):
    ///
    /// - `{prefix}_CERT` and `{prefix}_KEY`: PEM files (the chain, leaf first; a PKCS#8, PKCS#1
    ///   or SEC1 key);
    /// - else `{prefix}=dev`: the development certificate in `{prefix}_DIR` (default
    ///   `target/keycard-dev-tls`), generated when absent ([`TlsSetup::development`]);
    /// - else (`{prefix}` unset, empty or `off`): `None`, plain HTTP.
    ///
    /// # Errors
    /// When only one of the files is given, the mode is not `dev`/`off`, or the files do not load.
    pub fn from_env(prefix: &str) -> Result<Option<Self>, TlsError> {
        Self::from_vars(prefix, |name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables read by `lookup` (name → value).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_vars(
        prefix: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TlsError> {
        let var = |suffix: &str| lookup(&format!("{prefix}{suffix}")).filter(|v| !v.is_empty());
        match (var("_CERT"), var("_KEY")) {
            (Some(cert), Some(key)) => return Self::from_pem_files(cert, key).map(Some),
            (None, None) => {}
            _ => {
                return Err(TlsError::Config(format!(
                    "set both {prefix}_CERT and {prefix}_KEY (PEM files), or neither"
                )));
            }
        }
        match var("").as_deref() {
            None | Some("off") => Ok(None),
            Some("dev") => {
                let dir = var("_DIR").unwrap_or_else(|| "target/keycard-dev-tls".to_owned());
                Self::development(Path::new(&dir)).map(Some)
            }
            Some(other) => Err(TlsError::Config(format!(
                "{prefix}={other:?}: use `dev` (a generated development certificate), `off`, \
                 or set {prefix}_CERT and {prefix}_KEY"
            ))),
        }
    }

    /// TLS from a PEM certificate chain and a PEM private key.
    ///
    /// # Errors
    /// When a file cannot be read, holds no certificate or key, or rustls refuses the pair.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let config = server_config(&cert_pem, cert, &key_pem, key)?;
        Ok(Self {
            config,
            cert_path: cert.to_owned(),
            development: false,
        })
    }

    /// The self-signed development certificate for [`DEV_NAMES`], kept in `dir` as `cert.pem`
    /// and `key.pem`: loaded when both are there (so a client trusts it once), generated and
    /// written otherwise (the key readable by its owner only, on Unix).
    ///
    /// # Errors
    /// When the files cannot be written, or exist and do not load.
    pub fn development(dir: &Path) -> Result<Self, TlsError> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        if !(cert.exists() && key.exists()) {
            let names = DEV_NAMES
                .iter()
                .map(|n| (*n).to_owned())
                .collect::<Vec<_>>();
            let rcgen::CertifiedKey {
                cert: made,
                signing_key,
            } = rcgen::generate_simple_self_signed(names)?;
            std::fs::create_dir_all(dir).map_err(|source| TlsError::File {
                path: dir.to_owned(),
                source,
            })?;
            write(&key, signing_key.serialize_pem().as_bytes(), true)?;
            write(&cert, made.pem().as_bytes(), false)?;
        }
        let mut setup = Self::from_pem_files(&cert, &key)?;
        setup.development = true;
        Ok(setup)
    }

    /// The acceptor to hand to [`serve`].
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }

    /// How a client trusts this certificate: lines to print beside the `https://` URL.
    pub fn trust_hints(&self) -> Vec<String> {
        let cert = self.cert_path.display();
        let mut lines = vec![
            format!("Node (the Auth0 SDK): NODE_EXTRA_CA_CERTS={cert} node your-script.js"),
            format!("curl: curl --cacert {cert} https://..."),
        ];
        if self.development {
            lines.push(format!(
                "this is a self-signed development certificate for {}; trust it system-wide (Debian/Ubuntu): \
                 sudo cp {cert} /usr/local/share/ca-certificates/keycard-dev.crt && sudo update-ca-certificates",
                DEV_NAMES.join(", ")
            ));
        }
        lines
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::File {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    let file = || -> io::Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        options.open(path)?.write_all(bytes)
    };
    file().map_err(|source| TlsError::File {
        path: path.to_owned(),
        source,
    })
}

/// A rustls server configuration (aws-lc-rs, TLS 1.2 and 1.3, HTTP/1.1 by ALPN) from PEM bytes;
/// the paths only name the files in errors.
fn server_config(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem_error = |path: &Path, message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(
            cert_path,
            "no CERTIFICATE block (expected a PEM certificate chain)".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        pem_error(
            key_path,
            format!("no private key (expected a PEM PKCS#8, PKCS#1 or SEC1 key): {e}"),
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then lets open
/// connections finish their requests. Each request carries [`ConnectInfo`]`<SocketAddr>` (as
/// `into_make_service_with_connect_info` gives), so per-client throttling sees the peer.
///
/// A failed handshake (a client that does not trust the certificate, a scanner) ends that
/// connection only.
///
/// # Errors
/// Never in practice: accept errors (too many open files...) are logged and retried.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(
                move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    tower::ServiceExt::oneshot(router.clone(), request)
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
