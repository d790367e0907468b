//! Certificates of the TLS listeners: read from PEM files at start (a bad
//! file stops the start, naming its option), served through a resolver
//! whose certificate a SIGHUP reloads from the same files.
//!
//! Every handshake asks the resolver for the current certificate, so a
//! reload reaches new handshakes at once, on every shard, and connections
//! already open keep their session. A reload that fails (a file half
//! written, a key of another certificate) keeps the certificate in use.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::config::ConfigError;
use crate::engine::TlsConfig;

/// A listener's certificate and key files, with the options that named them.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The options, without dashes, for messages: `tls-cert`, `tls-key`.
    pub cert_option: &'static str,
    pub key_option: &'static str,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl CertFiles {
    fn invalid(&self, cert: bool, message: String) -> ConfigError {
        let (option, path) = if cert {
            (self.cert_option, &self.cert)
        } else {
            (self.key_option, &self.key)
        };
        ConfigError::Invalid {
            option,
            message: format!("{}: {message}", path.display()),
        }
    }

    /// Read the chain and the key, and check that the key is the chain's.
    pub fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, ConfigError> {
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.invalid(true, e.to_string()))?;
        if chain.is_empty() {
            return Err(self.invalid(true, "no CERTIFICATE block".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| self.invalid(false, format!("no private key: {e}")))?;
        let key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| self.invalid(false, format!("unusable private key: {e}")))?;
        let certified = CertifiedKey::new(chain, key);
        match certified.keys_match() {
            Ok(()) => Ok(certified),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(self.invalid(
                    false,
                    format!(
                        "does not match the certificate of --{} {}",
                        self.cert_option,
                        self.cert.display()
                    ),
                ))
            }
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(certified)
            }
            Err(e) => Err(self.invalid(true, format!("bad certificate: {e}"))),
        }
    }
}

/// The certificate in use, reloadable.
pub struct ReloadingCert {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    /// Written only by a reload; read (an `Arc` clone) once per handshake.
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Load `files`; an error names the option of the bad file.
    pub fn load(files: CertFiles) -> Result<Arc<ReloadingCert>, ConfigError> {
        let provider = provider();
        let key = files.load(&provider)?;
        Ok(Arc::new(ReloadingCert {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Read the files again; on success new handshakes get the new
    /// certificate, on failure the old one stays (the error says why).
    pub fn reload(&self) -> Result<(), ConfigError> {
        let key = self.files.load(&self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// A listener's TLS configuration with this certificate: TLS 1.2 and
    /// 1.3, ALPN `http/1.1` (a client offering only `h2` is refused).
    pub fn listener_config(self: &Arc<Self>, handshake_timeout: Duration) -> TlsConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConfig {
            rustls: Arc::new(config),
            handshake_timeout,
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Reload every listener's certificate (SIGHUP), logging and counting each.
pub fn reload_all(certs: &[Arc<ReloadingCert>], metrics: &crate::metrics::Metrics) {
    for cert in certs {
        let files = cert.files();
        match cert.reload() {
            Ok(()) => {
                metrics.count_tls_reload(true);
                tracing::info!(
                    cert = %files.cert.display(),
                    key = %files.key.display(),
                    "TLS certificate reloaded"
                );
            }
            Err(error) => {
                metrics.count_tls_reload(false);
                tracing::error!(%error, "TLS certificate not reloaded; the one in use stays");
            }
        }
    }
}
