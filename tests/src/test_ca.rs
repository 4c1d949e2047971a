//! Private certificate authorities for tests that need TLS a client does or does not trust: a self-signed CA made
//! with the machine's `openssl` in a folder, and certificates it signs for a server or a client.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A self-signed CA: `NAME.pem` and `NAME.key` in a folder of the test's.
pub struct TestCa {
    /// The CA's certificate (PEM): what a client is told to trust.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A certificate the CA signed and its key.
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, unencrypted).
    pub key: PathBuf,
}

/// What a certificate is for: its `extendedKeyUsage`, and for a server the address it names.
pub enum Usage<'a> {
    /// A server at this IP address (`subjectAltName=IP:...`).
    ServerAt(&'a str),
    /// A client presenting it (`clientAuth`).
    Client,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// Makes a CA called `name` (its files `name.pem`, `name.key`) with common name `common_name` in `dir`, valid
    /// for two days.
    pub fn new(dir: &Path, name: &str, common_name: &str) -> TestCa {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={common_name}"),
                "-keyout",
                &key.display().to_string(),
                "-out",
                &cert.display().to_string(),
            ],
        );
        TestCa { cert, key }
    }

    /// Signs a new key for `usage` with common name `common_name`: `name.pem` and `name-key.pem` beside the CA.
    pub fn issue(&self, name: &str, common_name: &str, usage: Usage<'_>) -> Issued {
        let dir = self.cert.parent().expect("the CA is in a folder");
        let file = |suffix: &str| dir.join(format!("{name}{suffix}")).display().to_string();
        let (cert, key, csr, ext) = (file(".pem"), file("-key.pem"), file(".csr"), file(".ext"));
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={common_name}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        let extensions = match usage {
            Usage::ServerAt(ip) => format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"),
            Usage::Client => "extendedKeyUsage=clientAuth\n".to_string(),
        };
        std::fs::write(&ext, extensions + "basicConstraints=CA:FALSE\n").expect("write extensions");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &self.cert.display().to_string(),
                "-CAkey",
                &self.key.display().to_string(),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        );
        Issued {
            cert: cert.into(),
            key: key.into(),
        }
    }
}
