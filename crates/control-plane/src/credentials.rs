//! The administrator's client certificate, issued by the control plane's CA through the same
//! signing path as any workload: created once, kept in the data directory (0600), and replaced
//! when it no longer verifies or another CA signs. The serving certificate of port 15012 lives
//! in [`crate::trust`] (never written to disk).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use meshward_ca::Authority;
use meshward_identity::{SpiffeId, TrustBundleSet};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::{StartError, files};

/// Lifetime of the administrator's certificate.
const ADMIN_CERT_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Where the administrator's credential lives.
#[derive(Debug)]
pub(crate) struct AdminFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) root_cert: PathBuf,
}

/// Makes sure `data_dir/admin/` holds a valid administrator certificate for `identity`,
/// issuing a new one when it is missing, expired or for another identity.
pub(crate) fn ensure_admin(
    ca: &Authority,
    data_dir: &Path,
    identity: &SpiffeId,
) -> Result<AdminFiles, StartError> {
    let dir = data_dir.join("admin");
    let files = AdminFiles {
        cert: dir.join("admin-cert.pem"),
        key: dir.join("admin-key.pem"),
        root_cert: dir.join("root-cert.pem"),
    };
    let io = |e: std::io::Error| StartError::DataDir {
        path: dir.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    // The roots are rewritten every start, so a CA change reaches the CLI.
    files::write_private(&files.root_cert, ca.roots_pem().as_bytes()).map_err(io)?;
    if admin_cert_usable(ca, &files.cert, identity) {
        return Ok(files);
    }
    let (svid, key) = ca
        .issue_with_new_key(identity, Some(ADMIN_CERT_TTL))
        .map_err(|e| StartError::Ca(e.to_string()))?;
    let key_pem = pem_key(&key)?;
    // Key first: a crash between the two writes leaves a key without a certificate, which the
    // next start replaces, never a certificate whose key is gone.
    files::write_private(&files.key, key_pem.as_bytes()).map_err(io)?;
    files::write_private(&files.cert, svid.chain_pem().as_bytes()).map_err(io)?;
    Ok(files)
}

/// Whether the stored admin certificate still verifies for `identity` under the CA's roots.
fn admin_cert_usable(ca: &Authority, path: &Path, identity: &SpiffeId) -> bool {
    let Ok(chain) =
        CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
    else {
        return false;
    };
    let mut bundles = TrustBundleSet::new();
    bundles.insert(ca.trust_bundle().clone());
    let allowed = meshward_identity::AllowedPeers::default().with_id(identity.clone());
    let verified = meshward_identity::verify_svid_chain(
        &chain,
        meshward_identity::Side::Client,
        &bundles,
        &allowed,
        rustls_pki_types::UnixTime::now(),
    )
    .is_ok();
    // A certificate from another signer (before a root rotation switched it) is replaced, so
    // the administrator keeps working once the old root is gone.
    verified
        && chain
            .get(1)
            .and_then(|signer| meshward_ca::spki_sha256(signer.as_ref()))
            .is_some_and(|key| key == ca.signer_key_sha256())
}

fn pem_key(key: &PrivateKeyDer<'_>) -> Result<String, StartError> {
    rcgen::KeyPair::try_from(key)
        .map(|pair| pair.serialize_pem())
        .map_err(|e| StartError::Ca(format!("cannot encode the administrator key: {e}")))
}
