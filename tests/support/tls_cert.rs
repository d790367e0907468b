//! Self-signed certificates made by a test (rcgen), in PEM files of a
//! directory of the test's own, for the TLS tests of the hub binary and of
//! loadgen.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::CertificateDer;

/// A certificate and its key in PEM files of a directory of the test's own
/// (removed when dropped).
pub struct TestCert {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    pub fn new() -> TestCert {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hub-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let der = write_cert(&cert, &key);
        TestCert {
            dir,
            cert,
            key,
            der,
        }
    }

    pub fn cert(&self) -> &str {
        self.cert.to_str().unwrap()
    }

    pub fn key(&self) -> &str {
        self.key.to_str().unwrap()
    }

    /// `--tls-cert`, `--tls-key` and their paths.
    pub fn args(&self) -> [&str; 4] {
        ["--tls-cert", self.cert(), "--tls-key", self.key()]
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new self-signed certificate for localhost and 127.0.0.1 in `cert`,
/// its key in `key` (written whole, each by a rename); its DER.
pub fn write_cert(cert: &Path, key: &Path) -> CertificateDer<'static> {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let write = |path: &Path, text: &str| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    };
    write(key, &made.signing_key.serialize_pem());
    write(cert, &made.cert.pem());
    made.cert.der().clone()
}
