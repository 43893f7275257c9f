//! TLS origination to servers outside the mesh (DestinationRule `SIMPLE` / `MUTUAL`): rustls
//! client configs built from the rule's files, cached per settings and rebuilt when a file
//! changes (as Istio's file-mounted certificates are reloaded). The client key is read here and
//! never leaves this process.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::creds::files::{read, stamp};
use crate::tls::origination_config;
use crate::view::Origination;

/// Where Debian (and most distributions) keep the system's roots, used when a rule names no
/// `caCertificates` ("else OS roots", istio/api `destination_rule.proto`).
const SYSTEM_ROOTS: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// Settings with a cached config at once; more distinct rules than this only cost rebuilding.
const CACHED: usize = 256;

type Stamps = Vec<Option<(SystemTime, u64)>>;
type Cache = HashMap<(Arc<Origination>, Option<&'static [u8]>), (Stamps, Arc<ClientConfig>)>;

/// Client configs per (settings, ALPN), with the file stamps they were built from.
#[derive(Debug, Default)]
pub(crate) struct Originations {
    cache: Mutex<Cache>,
}

impl Originations {
    /// The client config for `tls` offering `alpn`: the cached one while its files are
    /// unchanged, else rebuilt from the files (an error names the file and what is wrong).
    pub(crate) async fn config(
        &self,
        tls: &Arc<Origination>,
        alpn: Option<&'static [u8]>,
    ) -> Result<Arc<ClientConfig>, String> {
        let roots = match &tls.ca_certificates {
            Some(path) => path.as_path(),
            None => system_roots()?,
        };
        let mut paths = vec![roots];
        if let Some((cert, key)) = &tls.client_identity {
            paths.extend([cert.as_path(), key.as_path()]);
        }
        let stamps = stamp(&paths).await;
        let key = (Arc::clone(tls), alpn);
        if let Some((seen, config)) = self.lock().get(&key)
            && *seen == stamps
        {
            return Ok(Arc::clone(config));
        }
        let config = Arc::new(build(tls, roots, alpn).await?);
        let mut cache = self.lock();
        if cache.len() >= CACHED {
            cache.clear();
        }
        cache.insert(key, (stamps, Arc::clone(&config)));
        Ok(config)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Poisoned only by a panic mid-insert; the map is still a valid cache.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn system_roots() -> Result<&'static Path, String> {
    SYSTEM_ROOTS
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no caCertificates given and no system roots found ({})",
                SYSTEM_ROOTS.join(", ")
            )
        })
}

async fn build(
    tls: &Origination,
    roots_path: &Path,
    alpn: Option<&'static [u8]>,
) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    let pem = read(roots_path).await.map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "{}: no usable CA certificate",
            roots_path.display()
        ));
    }
    let identity = match &tls.client_identity {
        Some((cert, key)) => {
            let chain =
                CertificateDer::pem_slice_iter(&read(cert).await.map_err(|e| e.to_string())?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("{}: no CERTIFICATE section", cert.display()));
            }
            let key_der =
                PrivateKeyDer::from_pem_slice(&read(key).await.map_err(|e| e.to_string())?)
                    .map_err(|e| format!("{}: no usable private key: {e}", key.display()))?;
            Some((chain, key_der))
        }
        None => None,
    };
    let names = if tls.subject_alt_names.is_empty() {
        std::slice::from_ref(&tls.server_name)
    } else {
        tls.subject_alt_names.as_slice()
    };
    let names = names
        .iter()
        .map(|n| ServerName::try_from(n.clone()).map_err(|e| format!("`{n}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    origination_config(roots, names, identity, alpn).map_err(|e| e.to_string())
}
