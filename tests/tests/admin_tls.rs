//! `keycard_examples::tls`, the admin listener's HTTPS: configuration from variables, PEM
//! files that do not load, the development certificate kept across restarts, and a router
//! served over TLS to a client that trusts the certificate (and refused to one that does not).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keycard_examples::tls::{self, TlsError, TlsSetup};
use tokio_rustls::rustls;

fn dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("admin-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn the_variables_choose_off_dev_or_files() {
    assert!(TlsSetup::from_vars("T", vars(&[])).unwrap().is_none());
    assert!(
        TlsSetup::from_vars("T", vars(&[("T", "off")]))
            .unwrap()
            .is_none()
    );
    assert!(
        TlsSetup::from_vars("T", vars(&[("T", "")]))
            .unwrap()
            .is_none()
    );

    let dev = dir("vars-dev");
    let dev_dir = dev.to_str().unwrap();
    let setup = TlsSetup::from_vars("T", vars(&[("T", "dev"), ("T_DIR", dev_dir)]))
        .unwrap()
        .unwrap();
    assert!(setup.development);
    assert_eq!(setup.cert_path, dev.join("cert.pem"));
    let hints = setup.trust_hints().join("\n");
    assert!(hints.contains(&format!(
        "NODE_EXTRA_CA_CERTS={}",
        setup.cert_path.display()
    )));
    assert!(hints.contains(&format!("curl --cacert {}", setup.cert_path.display())));

    // The operator's own files (here the development pair, given as files).
    let (cert, key) = (dev.join("cert.pem"), dev.join("key.pem"));
    let files = TlsSetup::from_vars(
        "T",
        vars(&[
            ("T_CERT", cert.to_str().unwrap()),
            ("T_KEY", key.to_str().unwrap()),
        ]),
    )
    .unwrap()
    .unwrap();
    assert!(!files.development);
    assert!(!files.trust_hints().join("\n").contains("self-signed"));

    let one = TlsSetup::from_vars("T", vars(&[("T_CERT", "c.pem")])).unwrap_err();
    assert_eq!(
        one.to_string(),
        "set both T_CERT and T_KEY (PEM files), or neither"
    );
    let unknown = TlsSetup::from_vars("T", vars(&[("T", "on")])).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "T=\"on\": use `dev` (a generated development certificate), `off`, or set T_CERT and T_KEY"
    );
}

#[test]
fn files_that_do_not_load_say_which_and_why() {
    let dir = dir("bad-files");
    let dev = TlsSetup::development(&dir.join("dev")).unwrap();
    let key = dir.join("dev/key.pem");
    let missing = dir.join("missing.pem");
    let err = TlsSetup::from_pem_files(&missing, &key).unwrap_err();
    assert!(
        matches!(err, TlsError::File { ref path, .. } if *path == missing),
        "{err}"
    );

    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err = TlsSetup::from_pem_files(&not_pem, &key).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no CERTIFICATE block (expected a PEM certificate chain)",
            not_pem.display()
        )
    );
    let err = TlsSetup::from_pem_files(&dev.cert_path, &not_pem).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}: no private key (expected a PEM PKCS#8, PKCS#1 or SEC1 key)",
            not_pem.display()
        )),
        "{err}"
    );
    // A key that is not the certificate's.
    let other = TlsSetup::development(&dir.join("other")).unwrap();
    let err = TlsSetup::from_pem_files(&other.cert_path, &key).unwrap_err();
    assert!(matches!(err, TlsError::Rustls(_)), "{err}");
}

#[test]
fn the_development_certificate_is_kept_across_restarts() {
    let dir = dir("restart");
    TlsSetup::development(&dir).unwrap();
    let first = std::fs::read(dir.join("cert.pem")).unwrap();
    TlsSetup::development(&dir).unwrap();
    assert_eq!(std::fs::read(dir.join("cert.pem")).unwrap(), first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key is readable by its owner only");
    }
}

/// A TLS client trusting only `cert_pem`, for `name`.
async fn https_get(
    addr: std::net::SocketAddr,
    name: &str,
    cert_pem: &[u8],
) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

#[tokio::test]
async fn a_router_is_served_over_tls_with_the_peer_address() {
    use axum::extract::ConnectInfo;
    let setup = TlsSetup::development(&dir("serve")).unwrap();
    let router =
        axum::Router::new().route(
            "/peer",
            axum::routing::get(
                |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>| async move {
                    peer.ip().to_string()
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tls::serve(
        listener,
        setup.acceptor(),
        router,
        std::future::pending(),
    ));
    let cert = std::fs::read(&setup.cert_path).unwrap();
    for name in ["127.0.0.1", "localhost"] {
        let answer = https_get(addr, name, &cert).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("127.0.0.1"), "{answer}");
    }
    // A client that does not trust it: the handshake fails; the server goes on.
    let stranger = TlsSetup::development(&dir("stranger")).unwrap();
    let other = std::fs::read(&stranger.cert_path).unwrap();
    let refused = https_get(addr, "127.0.0.1", &other).await.unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
    assert!(https_get(addr, "127.0.0.1", &cert).await.is_ok());
    // Not a name of the certificate.
    assert!(https_get(addr, "example.com", &cert).await.is_err());
}
