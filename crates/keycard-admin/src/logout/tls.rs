//! The HTTP(S) client deliveries use: rustls on the aws-lc-rs provider (the one jsonwebtoken
//! already builds), Mozilla's roots from `webpki-roots` so the trust set is the same on every
//! machine and container, plus the configured roots.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use super::error::LogoutConfigError;

pub(super) type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Adds every `CERTIFICATE` block of `pem` to `roots`.
pub(super) fn add_roots(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), LogoutConfigError> {
    let invalid = |reason: String| LogoutConfigError::InvalidCertificate(reason);
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| invalid(e.to_string()))?;
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(invalid("no CERTIFICATE block in the PEM".to_owned()));
    }
    Ok(())
}

/// A client for `http://` and `https://` receivers trusting `custom_roots` (and Mozilla's
/// roots when `built_in_roots`); connecting may take at most `connect_timeout`.
pub(super) fn client(
    custom_roots: &RootCertStore,
    built_in_roots: bool,
    connect_timeout: Duration,
) -> HttpsClient {
    let mut roots = custom_roots.clone();
    if built_in_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let tls = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    // The TLS connector wraps this one and needs it to pass https:// URIs through.
    http.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(connector)
}
