//! The control plane's own credentials, issued by its CA through the same signing path as any
//! workload: its serving certificate (regenerated at every start, never written to disk) and
//! the administrator's client certificate (created once, kept in the data directory, 0600).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use meshward_ca::Authority;
use meshward_identity::{SpiffeId, TrustBundleSet};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::{StartError, files, tls};

/// Lifetime of the control plane's serving certificate; it is reissued at every start.
const SERVER_CERT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
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
    meshward_identity::verify_svid_chain(
        &chain,
        meshward_identity::Side::Client,
        &bundles,
        &allowed,
        rustls_pki_types::UnixTime::now(),
    )
    .is_ok()
}

/// A fresh serving certificate for `identity`, and the TLS config of port 15012.
pub(crate) fn server_tls(ca: &Authority, identity: &SpiffeId) -> Result<ServerConfig, StartError> {
    let (svid, key) = ca
        .issue_with_new_key(identity, Some(SERVER_CERT_TTL))
        .map_err(|e| StartError::Ca(e.to_string()))?;
    let mut bundles = TrustBundleSet::new();
    bundles.insert(ca.trust_bundle().clone());
    tls::server_config(Arc::new(bundles), svid.chain, key)
        .map_err(|e| StartError::Tls(e.to_string()))
}

fn pem_key(key: &PrivateKeyDer<'_>) -> Result<String, StartError> {
    rcgen::KeyPair::try_from(key)
        .map(|pair| pair.serialize_pem())
        .map_err(|e| StartError::Ca(format!("cannot encode the administrator key: {e}")))
}
