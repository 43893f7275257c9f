//! [`Authority`]: a loaded, checked CA that signs CSRs. Built-in and plug-in CAs are the same
//! type; they differ only in who made the files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshward_identity::{BundleError, SpiffeId, TrustBundle, TrustDomain};
use rcgen::{CertificateParams, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::cert::{spki_sha256, to_pem};
use crate::files::{FilesError, create_dir_atomically, read_bounded};
use crate::init::{InitOptions, new_ca_files};
use crate::load::{
    CA_CERT, CA_KEY, CERT_CHAIN, LoadError, ROOT_CERT, TRUST_DOMAIN, load_dir, parse,
};
use crate::sign::{IssuedSvid, SignError, SigningContext, SigningPolicy, sign_csr};

/// Namespace of the control plane's own identity, as Istio's istiod.
pub const CONTROL_PLANE_NAMESPACE: &str = "istio-system";
/// Service account of the control plane's own identity:
/// `spiffe://<td>/ns/istio-system/sa/meshward-control-plane`.
pub const CONTROL_PLANE_SERVICE_ACCOUNT: &str = "meshward-control-plane";

/// Why a CA could not be created, adopted or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Reading or writing the directory failed.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The directory's contents failed a check.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Two sources disagree about the trust domain.
    #[error("{}: names trust domain `{found}`, but the CA is for `{expected}`", path.display())]
    TrustDomainMismatch {
        /// Where `found` comes from.
        path: PathBuf,
        /// The trust domain named there.
        found: TrustDomain,
        /// The trust domain asked for (or named elsewhere).
        expected: TrustDomain,
    },
    /// Nothing says which trust domain the CA is for.
    #[error("{}: no trust domain is recorded for this CA; give one explicitly", dir.display())]
    UnknownTrustDomain {
        /// The CA directory.
        dir: PathBuf,
    },
    /// The roots cannot form a trust bundle.
    #[error("{}: {source}", path.display())]
    Bundle {
        /// The roots file.
        path: PathBuf,
        /// Why.
        source: BundleError,
    },
    /// Key or certificate generation failed.
    #[error("cannot generate the CA: {0}")]
    Rcgen(rcgen::Error),
    /// A root rotation cannot go ahead.
    #[error("root rotation: {0}")]
    Rotation(String),
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// A certificate authority ready to sign: its signing key and certificate, the chain above it,
/// and the roots that peers should trust.
pub struct Authority {
    trust_domain: TrustDomain,
    issuer: Issuer<'static, KeyPair>,
    signing_cert: CertificateDer<'static>,
    ca_not_after: OffsetDateTime,
    /// The signing certificate (unless it is the root), intermediates, then the root.
    chain_above: Vec<CertificateDer<'static>>,
    bundle: TrustBundle,
    policy: SigningPolicy,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Authority")
            .field("trust_domain", &self.trust_domain)
            .field("ca_not_after", &self.ca_not_after)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Creates a built-in CA in `dir` (missing or empty), then loads it.
    pub fn init(dir: &Path, options: &InitOptions) -> Result<Self, CaError> {
        let files = new_ca_files(options)?;
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
        create_dir_atomically(dir, &files)?;
        Self::load(dir, Some(&options.trust_domain))
    }

    /// Checks the Istio `cacerts` directory `plugin_dir`, then copies it into `dir` (missing or
    /// empty) with the trust domain recorded, and loads the copy.
    pub fn adopt(
        plugin_dir: &Path,
        dir: &Path,
        trust_domain: &TrustDomain,
    ) -> Result<Self, CaError> {
        Self::load(plugin_dir, Some(trust_domain))?;
        let mut files = Vec::new();
        for name in [CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN] {
            let path = plugin_dir.join(name);
            if name != CERT_CHAIN || path.exists() {
                files.push((name, read_bounded(&path)?));
            }
        }
        files.push((TRUST_DOMAIN, format!("{trust_domain}\n").into_bytes()));
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_slice())).collect();
        create_dir_atomically(dir, &files)?;
        Self::load(dir, Some(trust_domain))
    }

    /// Loads the CA in `dir` and runs every check. `trust_domain`, when given, must agree with
    /// what the directory records; when not, the directory must record one.
    pub fn load(dir: &Path, trust_domain: Option<&TrustDomain>) -> Result<Self, CaError> {
        let material = load_dir(dir)?;
        let mut resolved: Option<(PathBuf, TrustDomain)> =
            trust_domain.map(|td| (dir.to_owned(), td.clone()));
        for (path, found) in material.named_trust_domains {
            match &resolved {
                Some((_, expected)) if *expected != found => {
                    return Err(CaError::TrustDomainMismatch {
                        path,
                        found,
                        expected: expected.clone(),
                    });
                }
                Some(_) => {}
                None => resolved = Some((path, found)),
            }
        }
        let Some((_, trust_domain)) = resolved else {
            return Err(CaError::UnknownTrustDomain {
                dir: dir.to_owned(),
            });
        };

        let cert_path = dir.join(CA_CERT);
        let ca_not_after = parse(&cert_path, 1, &material.ca_cert)?
            .validity()
            .not_after
            .to_datetime();
        let issuer =
            Issuer::from_ca_cert_der(&material.ca_cert, material.ca_key).map_err(CaError::Rcgen)?;
        let mut chain_above = Vec::new();
        if material.ca_cert != material.root {
            chain_above.push(material.ca_cert.clone());
        }
        chain_above.extend(material.intermediates);
        chain_above.push(material.root);
        let bundle = TrustBundle::new(trust_domain.clone(), material.roots).map_err(|source| {
            CaError::Bundle {
                path: dir.join(ROOT_CERT),
                source,
            }
        })?;
        Ok(Self {
            trust_domain,
            issuer,
            signing_cert: material.ca_cert,
            ca_not_after,
            chain_above,
            bundle,
            policy: SigningPolicy::default(),
        })
    }

    /// Loads the CA in `dir`, or creates a built-in one there if `dir` holds none yet.
    pub fn load_or_init(dir: &Path, trust_domain: &TrustDomain) -> Result<Self, CaError> {
        if dir.join(CA_CERT).exists() {
            Self::load(dir, Some(trust_domain))
        } else {
            Self::init(dir, &InitOptions::new(trust_domain.clone()))
        }
    }

    /// Replaces the signing policy (TTL default and maximum).
    pub fn with_policy(mut self, policy: SigningPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The signing policy in force.
    pub fn policy(&self) -> SigningPolicy {
        self.policy
    }

    /// The trust domain this CA vouches for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The roots peers should trust: the trust bundle of this CA's domain.
    pub fn trust_bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// The roots as PEM, to hand to workloads.
    pub fn roots_pem(&self) -> String {
        to_pem(self.bundle.roots())
    }

    /// The certificate that signs leaves.
    pub fn signing_cert(&self) -> &CertificateDer<'static> {
        &self.signing_cert
    }

    /// The root the signing chain ends at.
    pub fn root(&self) -> Option<&CertificateDer<'static>> {
        self.chain_above.last()
    }

    /// What issued leaves carry above themselves: the signing certificate (unless it is the
    /// root), intermediates, then the root (or, during a root rotation, a path to the old root).
    pub fn chain_above(&self) -> &[CertificateDer<'static>] {
        &self.chain_above
    }

    /// When the signing certificate expires.
    pub fn signing_not_after(&self) -> OffsetDateTime {
        self.ca_not_after
    }

    /// SHA-256 (lower-case hex) of the signing certificate's SubjectPublicKeyInfo: names the
    /// key that signs leaves, whichever certificate (or cross-signed twin) carries it.
    pub fn signer_key_sha256(&self) -> String {
        spki_sha256(&self.signing_cert).unwrap_or_default()
    }

    /// Replaces the roots handed to peers (a rotation trusts the old and the new root at once).
    pub(crate) fn with_roots(
        mut self,
        roots: Vec<CertificateDer<'static>>,
        path: &Path,
    ) -> Result<Self, CaError> {
        self.bundle = TrustBundle::new(self.trust_domain.clone(), roots).map_err(|source| {
            CaError::Bundle {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(self)
    }

    /// Replaces what leaves carry above the signing certificate.
    pub(crate) fn with_chain_above(mut self, chain: Vec<CertificateDer<'static>>) -> Self {
        self.chain_above = chain;
        self
    }

    /// Signs `params` for `public_key` with this CA's key (a cross-signed twin of another CA
    /// certificate).
    pub(crate) fn sign_ca(
        &self,
        params: &CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<rcgen::Certificate, CaError> {
        params
            .signed_by(public_key, &self.issuer)
            .map_err(CaError::Rcgen)
    }

    /// Signs a PKCS#10 `csr` (PEM or DER) for the identity the caller proved; the CSR's own
    /// names are ignored. `ttl` `None` uses the policy's default; above its maximum is refused.
    pub fn sign(
        &self,
        csr: &[u8],
        identity: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<IssuedSvid, SignError> {
        if identity.trust_domain() != &self.trust_domain {
            return Err(SignError::WrongTrustDomain {
                id: identity.clone(),
                ca: self.trust_domain.to_string(),
            });
        }
        self.sign_unchecked(csr, identity, ttl)
    }

    /// [`Authority::sign`] for an identity in this CA's trust domain or in `mesh`: the trust
    /// domain the mesh's configuration names, which may differ from the one this CA was made
    /// for (a trust-domain migration keeps the roots and changes the names, as Istio's
    /// `trustDomain` + `trustDomainAliases` do).
    pub fn sign_in(
        &self,
        csr: &[u8],
        identity: &SpiffeId,
        ttl: Option<Duration>,
        mesh: &TrustDomain,
    ) -> Result<IssuedSvid, SignError> {
        if identity.trust_domain() == mesh {
            return self.sign_unchecked(csr, identity, ttl);
        }
        self.sign(csr, identity, ttl)
    }

    fn sign_unchecked(
        &self,
        csr: &[u8],
        identity: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<IssuedSvid, SignError> {
        let ctx = SigningContext {
            issuer: &self.issuer,
            ca_not_after: self.ca_not_after,
            chain_above: &self.chain_above,
            policy: self.policy,
        };
        sign_csr(&ctx, csr, identity, ttl)
    }

    /// Issues an SVID for a key generated here (ECDSA P-256), through the same CSR path as
    /// [`Authority::sign`]; for the control plane's own serving certificate.
    pub fn issue_with_new_key(
        &self,
        identity: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<(IssuedSvid, PrivateKeyDer<'static>), SignError> {
        let issue_err = |err: rcgen::Error| SignError::Issue(err.to_string());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(issue_err)?;
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .map_err(issue_err)?;
        let svid = self.sign(csr.der().as_ref(), identity, ttl)?;
        let key = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        Ok((svid, key))
    }
}

#[cfg(test)]
mod tests;
