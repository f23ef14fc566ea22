//! TLS connectors for `rediss://` (feature `tls`): rustls on the ring provider, chosen
//! explicitly. fred's own default connector asks rustls for the process-wide provider, which
//! panics when a build enables more than one (ring for fred, aws-lc-rs for another crate) and
//! none was installed.

use std::sync::Arc;

use fred::types::config::{TlsConfig, TlsConnector, TlsHostMapping};
use rustls_ring::RootCertStore;
use rustls_ring::pki_types::CertificateDer;
use rustls_ring::pki_types::pem::PemObject;

use crate::config::ConnectError;

fn config_error(what: &str, error: impl std::fmt::Display) -> ConnectError {
    ConnectError::Config(format!("{what}: {error}"))
}

/// A connector that trusts `roots` only.
fn connector(roots: RootCertStore) -> Result<TlsConnector, ConnectError> {
    let provider = Arc::new(rustls_ring::crypto::ring::default_provider());
    let config = rustls_ring::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error("TLS setup", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(config))
}

/// The TLS settings for `rediss://` URLs: the system's root certificates.
pub(crate) fn system_roots() -> Result<TlsConfig, ConnectError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0
        && let Some(error) = found.errors.first()
    {
        return Err(config_error(
            "could not load the system's root certificates",
            error,
        ));
    }
    Ok(connector(roots)?.into())
}

/// The TLS settings that trust only the certificates in `pem`, keeping a cluster host mapping
/// already configured.
pub(crate) fn pem_roots(
    pem: &[u8],
    previous: Option<&TlsConfig>,
) -> Result<TlsConfig, ConnectError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| config_error("tls_root_certificate: invalid PEM", e))?;
        roots
            .add(cert)
            .map_err(|e| config_error("tls_root_certificate: unusable certificate", e))?;
    }
    if roots.is_empty() {
        return Err(ConnectError::Config(
            "tls_root_certificate: no CERTIFICATE block in the PEM".into(),
        ));
    }
    Ok(TlsConfig {
        connector: connector(roots)?,
        hostnames: previous.map_or(TlsHostMapping::None, |tls| tls.hostnames.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_certificates_is_refused() {
        for pem in [
            &b""[..],
            b"not a pem",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(matches!(pem_roots(pem, None), Err(ConnectError::Config(_))));
        }
    }
}
