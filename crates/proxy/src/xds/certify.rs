//! The proxy's certificate from the control plane: a fresh P-256 key generated here (it never
//! leaves the process), a CSR, `Certificates.Sign` with the join token the first time and over
//! mTLS with the current SVID afterwards; renewal at 50 % of the lifetime ± 5 % jitter.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshward_api::v1::SignRequest;
use meshward_api::v1::certificates_client::CertificatesClient;
use meshward_identity::{SpiffeId, TrustBundle, TrustBundleSet};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Backoff, ControlPlane, XdsError, random_unit};
use crate::admin::Status;
use crate::creds::{Credentials, CredsStore};
use crate::metrics::Metrics;

/// Fraction of the lifetime after which the certificate is renewed (Istio's default).
const RENEW_RATIO: f64 = 0.5;
/// Jitter around it, as a fraction of the lifetime (total width).
const RENEW_JITTER: f64 = 0.1;

/// How long to wait before renewing a certificate valid from `not_before` to `not_after`, at
/// `now`; `jitter` in [0, 1) moves the point within ±5 % of the lifetime.
pub fn refresh_in(
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    jitter: f64,
) -> Duration {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    let ratio = RENEW_RATIO + RENEW_JITTER * (jitter.clamp(0.0, 1.0) - 0.5);
    let at = not_before + life.mul_f64(ratio);
    at.duration_since(now).unwrap_or_default()
}

/// One signing round trip: new key, CSR, `Sign`. `current` authenticates renewals; `token`
/// the first certificate.
pub async fn certify(
    cp: &ControlPlane,
    token: Option<&str>,
    current: Option<&Credentials>,
) -> Result<Credentials, XdsError> {
    let cert_err = |e: &dyn std::fmt::Display| XdsError::Certificate(e.to_string());
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| cert_err(&e))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "meshward-proxy");
    params.distinguished_name = dn;
    // No SANs: the control plane names the identity the credential proves.
    let csr = params.serialize_request(&key).map_err(|e| cert_err(&e))?;
    let channel = cp.channel(current).await?;
    let resp = CertificatesClient::new(channel)
        .sign(SignRequest {
            csr_der: csr.der().to_vec(),
            join_token: token.unwrap_or_default().to_owned(),
            ttl_seconds: 0,
        })
        .await?
        .into_inner();

    let identity: SpiffeId = resp.identity.parse().map_err(|e| cert_err(&e))?;
    // A renewal keeps the identity; only its trust domain may change (the mesh's MeshConfig
    // `trustDomain` moved, and the old one is an alias in the views).
    if let Some(current) = current
        && current.id().path() != identity.path()
    {
        return Err(XdsError::Certificate(format!(
            "renewal changed the identity from {} to {identity}",
            current.id()
        )));
    }
    let chain = CertificateDer::pem_slice_iter(resp.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(&e))?;
    let (bundle, _) = TrustBundle::from_pem(
        identity.trust_domain().clone(),
        resp.trust_bundle_pem.as_bytes(),
    )
    .map_err(|e| cert_err(&e))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // A renewal keeps the trust the views installed (aliases, other trust domains,
    // revocations) and takes this mesh's roots from the response.
    let mut bundles = current.map_or_else(TrustBundleSet::new, |c| c.bundles().as_ref().clone());
    bundles.insert(bundle);
    let creds = Credentials::new(chain, key_der, Arc::new(bundles)).map_err(|e| cert_err(&e))?;
    if creds.id() != &identity {
        return Err(XdsError::Certificate(format!(
            "the certificate names {}, the response says {identity}",
            creds.id()
        )));
    }
    Ok(creds)
}

/// Gets the first certificate with `token` (retrying until it works or `stop`), then renews
/// it for as long as the proxy runs. Failures are reported in `status` and retried with
/// backoff; the current certificate stays in place until a new one validates.
pub async fn run(
    cp: ControlPlane,
    token: String,
    store: CredsStore,
    status: watch::Sender<Status>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let current = store.current();
        let attempt = match &current {
            None => certify(&cp, Some(&token), None).await,
            Some(c) => {
                // The lifetime counts from now, when this certificate has just been installed:
                // the CA backdates `not_before` by minutes for clock skew, which would put the
                // renewal point of a short-lived certificate in the past (a renewal storm).
                let now = SystemTime::now();
                let wait = refresh_in(c.not_before().max(now), c.not_after(), now, random_unit());
                tracing::debug!(?wait, "next certificate renewal");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                    () = store.renewal_requested() => {}
                }
                renew_until_done(&cp, c, &status, &metrics, &mut backoff, &stop).await
            }
        };
        match attempt {
            Ok(creds) => {
                backoff.reset();
                status.send_modify(|s| s.renewal_error = None);
                store.publish(creds);
            }
            Err(_) if stop.is_cancelled() => return,
            Err(err) => {
                metrics.record_renewal_failure();
                tracing::warn!(%err, "cannot get a certificate from the control plane");
                status.send_modify(|s| s.renewal_error = Some(err.to_string()));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

/// Renews `current`, retrying with backoff until it works or `stop`.
async fn renew_until_done(
    cp: &ControlPlane,
    current: &Credentials,
    status: &watch::Sender<Status>,
    metrics: &Metrics,
    backoff: &mut Backoff,
    stop: &CancellationToken,
) -> Result<Credentials, XdsError> {
    loop {
        match certify(cp, None, Some(current)).await {
            Ok(creds) => return Ok(creds),
            Err(err) => {
                metrics.record_renewal_failure();
                tracing::warn!(%err, "certificate renewal failed; keeping the current certificate");
                status.send_modify(|s| s.renewal_error = Some(err.to_string()));
            }
        }
        tokio::select! {
            () = stop.cancelled() => return Err(XdsError::Certificate("stopped".to_owned())),
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_half_life_within_jitter() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t1 = t0 + Duration::from_secs(3600);
        assert_eq!(refresh_in(t0, t1, t0, 0.5), Duration::from_secs(1800));
        let early = refresh_in(t0, t1, t0, 0.0);
        let late = refresh_in(t0, t1, t0, 0.999);
        assert!(early >= Duration::from_secs(1620) && early < Duration::from_secs(1800));
        assert!(late > Duration::from_secs(1800) && late <= Duration::from_secs(1980));
        // Past the renewal point: renew now.
        assert_eq!(refresh_in(t0, t1, t1, 0.5), Duration::ZERO);
    }
}
