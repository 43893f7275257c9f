//! Loading and checking a CA directory in Istio's `cacerts` layout, for both plug-in and
//! built-in CAs. Every failure names the file it is about.
//!
//! Layout: `ca-cert.pem` (the signing certificate), `ca-key.pem` (its key), `root-cert.pem`
//! (one or more roots), `cert-chain.pem` (from the signing certificate up to a root; Istio's
//! includes the signing certificate first and often the root last; empty or missing when the
//! signing certificate is the root). Meshward adds `trust-domain` when it knows it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use meshward_identity::TrustDomain;
use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{PemObject, SectionKind};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cert::named_trust_domain;
use crate::files::{FilesError, read_bounded};

pub(crate) const CA_CERT: &str = "ca-cert.pem";
pub(crate) const CA_KEY: &str = "ca-key.pem";
pub(crate) const ROOT_CERT: &str = "root-cert.pem";
pub(crate) const CERT_CHAIN: &str = "cert-chain.pem";
/// Not part of Istio's layout: the trust domain, for CAs whose certificates do not name it.
pub(crate) const TRUST_DOMAIN: &str = "trust-domain";

/// Why a CA directory cannot be used. Each variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file could not be read.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// A file has no PEM certificate.
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A file's PEM or certificate DER is malformed.
    #[error("{}: certificate #{position} is malformed: {reason}", path.display())]
    BadCert {
        /// The file.
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        position: usize,
        /// What is wrong.
        reason: String,
    },
    /// The key file is not a usable private key.
    #[error("{}: not a usable private key: {reason}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is not the key of the signing certificate.
    #[error("{}: the key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A certificate that must sign is not a CA.
    #[error("{}: `{subject}` is not a CA certificate (basicConstraints CA:TRUE missing)", path.display())]
    NotCa {
        /// The file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
    },
    /// A certificate that must sign lacks keyUsage keyCertSign.
    #[error("{}: `{subject}` lacks keyUsage keyCertSign", path.display())]
    NoKeyCertSign {
        /// The file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
    },
    /// A certificate is outside its validity period.
    #[error("{}: `{subject}` is not valid now (valid {not_before} to {not_after})", path.display())]
    OutsideValidity {
        /// The file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
    },
    /// A certificate is not signed by the next one up.
    #[error("{}: `{subject}` is not signed by `{issuer}`: {reason}", path.display())]
    BrokenChain {
        /// The file holding the child certificate.
        path: PathBuf,
        /// The child's subject.
        subject: String,
        /// The expected issuer's subject.
        issuer: String,
        /// Why the signature check failed.
        reason: String,
    },
    /// The chain does not end at any root in `root-cert.pem`.
    #[error("{}: the chain ends at `{issuer}`, which is not a root in {}", path.display(), roots.display())]
    NoRoot {
        /// The file holding the last certificate of the chain.
        path: PathBuf,
        /// The issuer that was looked for.
        issuer: String,
        /// The roots file.
        roots: PathBuf,
    },
    /// A rotation's state file is unusable.
    #[error("{}: {reason}", path.display())]
    BadState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The `trust-domain` file is invalid.
    #[error("{}: {reason}", path.display())]
    BadTrustDomain {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A CA directory that passed every check.
pub(crate) struct Material {
    pub(crate) ca_cert: CertificateDer<'static>,
    pub(crate) ca_key: KeyPair,
    /// Certificates between the signing certificate and the root, both excluded.
    pub(crate) intermediates: Vec<CertificateDer<'static>>,
    /// The root the signing chain ends at.
    pub(crate) root: CertificateDer<'static>,
    /// Every root of `root-cert.pem` (the chain's root among them).
    pub(crate) roots: Vec<CertificateDer<'static>>,
    /// Trust domains the directory names: its `trust-domain` file, then the signing
    /// certificate's and the root's `spiffe://<td>` SANs.
    pub(crate) named_trust_domains: Vec<(PathBuf, TrustDomain)>,
}

/// A certificate with the file it came from.
struct Located {
    path: PathBuf,
    /// 1-based position in that file.
    position: usize,
    der: CertificateDer<'static>,
}

pub(crate) fn load_dir(dir: &Path) -> Result<Material, LoadError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let roots_path = dir.join(ROOT_CERT);
    let chain_path = dir.join(CERT_CHAIN);

    let ca_cert = read_certs(&cert_path, true)?.swap_remove(0);
    let ca_key = read_key(&key_path)?;
    let roots = read_certs(&roots_path, true)?;
    let chain_certs = if chain_path.exists() {
        read_certs(&chain_path, false)?
    } else {
        Vec::new()
    };

    let ca = parse(&cert_path, 1, &ca_cert)?;
    // Compare the key bits, not the SPKI encoding, which may spell the algorithm differently.
    if ca_key.der_bytes() != ca.public_key().subject_public_key.data.as_ref() {
        return Err(LoadError::KeyMismatch {
            key: key_path,
            cert: cert_path,
        });
    }
    for (i, root) in roots.iter().enumerate() {
        let parsed = parse(&roots_path, i + 1, root)?;
        check_ca(&roots_path, &parsed)?;
    }

    // Istio's cert-chain.pem repeats the signing certificate first and may end with the root.
    let mut upper: Vec<CertificateDer<'static>> = chain_certs;
    let mut first_position = 1;
    if upper.first() == Some(&ca_cert) {
        upper.remove(0);
        first_position = 2;
    }
    while upper.last().is_some_and(|c| roots.contains(c)) {
        upper.pop();
    }
    let mut path = vec![Located {
        path: cert_path.clone(),
        position: 1,
        der: ca_cert.clone(),
    }];
    path.extend(upper.iter().enumerate().map(|(i, der)| Located {
        path: chain_path.clone(),
        position: first_position + i,
        der: der.clone(),
    }));
    let root = verify_path(&path, &roots, &roots_path)?;

    let mut named_trust_domains = Vec::new();
    let td_path = dir.join(TRUST_DOMAIN);
    if td_path.exists() {
        let text = read_bounded(&td_path)?;
        let td = std::str::from_utf8(&text)
            .map_err(|err| err.to_string())
            .and_then(|s| TrustDomain::new(s.trim()).map_err(|err| err.to_string()))
            .map_err(|reason| LoadError::BadTrustDomain {
                path: td_path.clone(),
                reason,
            })?;
        named_trust_domains.push((td_path, td));
    }
    if let Some(td) = named_trust_domain(&ca) {
        named_trust_domains.push((cert_path, td));
    }
    if let Some(td) = named_trust_domain(&parse(&roots_path, 1, &root)?) {
        named_trust_domains.push((roots_path, td));
    }

    Ok(Material {
        ca_cert,
        ca_key,
        intermediates: upper,
        root,
        roots,
        named_trust_domains,
    })
}

/// Checks each certificate of `path` is a valid CA signed by the next, and the last by a root.
/// Returns that root.
fn verify_path(
    path: &[Located],
    roots: &[CertificateDer<'static>],
    roots_path: &Path,
) -> Result<CertificateDer<'static>, LoadError> {
    for (i, link) in path.iter().enumerate() {
        let cert = parse(&link.path, link.position, &link.der)?;
        check_ca(&link.path, &cert)?;
        check_validity(&link.path, &cert)?;
        if let Some(parent) = path.get(i + 1) {
            let issuer = parse(&parent.path, parent.position, &parent.der)?;
            check_signed_by(&link.path, &cert, &issuer)?;
        }
    }
    let Some(last) = path.last() else {
        return Err(LoadError::NoCertificate {
            path: roots_path.to_owned(),
        });
    };
    if roots.contains(&last.der) {
        return Ok(last.der.clone());
    }
    let cert = parse(&last.path, last.position, &last.der)?;
    for (i, root) in roots.iter().enumerate() {
        let parsed = parse(roots_path, i + 1, root)?;
        if parsed.subject() == cert.issuer() && check_signed_by(&last.path, &cert, &parsed).is_ok()
        {
            check_validity(roots_path, &parsed)?;
            return Ok(root.clone());
        }
    }
    Err(LoadError::NoRoot {
        path: last.path.clone(),
        issuer: cert.issuer().to_string(),
        roots: roots_path.to_owned(),
    })
}

fn check_signed_by(
    path: &Path,
    cert: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<(), LoadError> {
    let broken = |reason: String| LoadError::BrokenChain {
        path: path.to_owned(),
        subject: cert.subject().to_string(),
        issuer: issuer.subject().to_string(),
        reason,
    };
    if cert.issuer() != issuer.subject() {
        return Err(broken(format!("its issuer is `{}`", cert.issuer())));
    }
    cert.verify_signature(Some(issuer.public_key()))
        .map_err(|err| broken(format!("signature check failed: {err}")))
}

pub(crate) fn check_ca(path: &Path, cert: &X509Certificate<'_>) -> Result<(), LoadError> {
    let subject = cert.subject().to_string();
    if !cert.is_ca() {
        return Err(LoadError::NotCa {
            path: path.to_owned(),
            subject,
        });
    }
    let can_sign = cert
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|ku| ku.value.key_cert_sign());
    if !can_sign {
        return Err(LoadError::NoKeyCertSign {
            path: path.to_owned(),
            subject,
        });
    }
    Ok(())
}

pub(crate) fn check_validity(path: &Path, cert: &X509Certificate<'_>) -> Result<(), LoadError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let validity = cert.validity();
    if validity.not_before.timestamp() > now || validity.not_after.timestamp() < now {
        return Err(LoadError::OutsideValidity {
            path: path.to_owned(),
            subject: cert.subject().to_string(),
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    Ok(())
}

pub(crate) fn parse<'a>(
    path: &Path,
    position: usize,
    der: &'a CertificateDer<'_>,
) -> Result<X509Certificate<'a>, LoadError> {
    let bad = |reason: String| LoadError::BadCert {
        path: path.to_owned(),
        position,
        reason,
    };
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(bad("trailing bytes after the certificate".to_owned())),
        Err(err) => Err(bad(err.to_string())),
    }
}

/// Every `CERTIFICATE` of a PEM file; any malformed one is an error (a CA directory is
/// configuration, not a bundle from a peer: it must be entirely right).
fn read_certs(path: &Path, required: bool) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let bytes = read_bounded(path)?;
    let mut certs = Vec::new();
    for (i, section) in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes).enumerate() {
        match section {
            Ok((SectionKind::Certificate, der)) => certs.push(CertificateDer::from(der)),
            Ok(_) => {}
            Err(err) => {
                return Err(LoadError::BadCert {
                    path: path.to_owned(),
                    position: i + 1,
                    reason: format!("malformed PEM: {err}"),
                });
            }
        }
    }
    if required && certs.is_empty() {
        return Err(LoadError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

pub(crate) fn read_key(path: &Path) -> Result<KeyPair, LoadError> {
    let bad = |reason: String| LoadError::BadKey {
        path: path.to_owned(),
        reason,
    };
    let bytes = read_bounded(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|err| bad(err.to_string()))?;
    KeyPair::from_pem(text).map_err(|err| bad(err.to_string()))
}
