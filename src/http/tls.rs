//! `serve --tls-self-signed`: HTTPS for local development, with a
//! certificate made at start for every configured host (rcgen, rustls with
//! the ring provider — the same crypto stack as the tokens).

use crate::topology::Topology;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::fmt;
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[tls_setup_failed] {}", self.0)
    }
}

impl std::error::Error for TlsError {}

/// A self-signed certificate for the hosts of every configured origin (plus
/// `localhost`), and its PEM for the user to trust or inspect.
pub struct SelfSigned {
    pub config: rustls::ServerConfig,
    pub certificate_pem: String,
    pub hosts: Vec<String>,
}

/// Makes the certificate and a rustls server configuration around it.
pub fn self_signed(topology: &Topology) -> Result<SelfSigned, TlsError> {
    let mut hosts: Vec<String> = topology
        .sites()
        .iter()
        .flat_map(|site| {
            site.origins
                .iter()
                .map(|o| o.host().trim_matches(['[', ']']).to_owned())
        })
        .collect();
    hosts.push("localhost".to_owned());
    hosts.sort();
    hosts.dedup();
    let certified =
        rcgen::generate_simple_self_signed(hosts.clone()).map_err(|e| TlsError(e.to_string()))?;
    let certificate_pem = certified.cert.pem();
    let chain: Vec<CertificateDer<'static>> = vec![certified.cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(e.to_string()))?;
    Ok(SelfSigned {
        config,
        certificate_pem,
        hosts,
    })
}
