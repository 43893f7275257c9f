//! `Certificates.Sign`: a CSR plus proof of identity in, an X.509-SVID chain out.
//!
//! The identity signed is the one the credential proves — a join token's namespace and service
//! account, or the caller's current SVID — never what the CSR asks for (Istio does the same:
//! `sans := caller.Identities`).

use std::{sync::Arc, time::Duration};

use meshward_api::v1::{SignRequest, SignResponse, certificates_server::Certificates};
use meshward_ca::{MAX_CSR_BYTES, SignError};
use meshward_identity::SpiffeId;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::{Shared, metrics::ErrorLabel, tls};

/// The signing service.
#[derive(Debug, Clone)]
pub(crate) struct CertificateService(pub(crate) Arc<Shared>);

#[tonic::async_trait]
impl Certificates for CertificateService {
    async fn sign(&self, request: Request<SignRequest>) -> Result<Response<SignResponse>, Status> {
        let shared = &self.0;
        shared.metrics.csr_count.inc();
        let peer = tls::peer_identity(&request);
        let req = request.into_inner();
        if req.csr_der.len() > MAX_CSR_BYTES {
            shared.metrics.csr_parsing_err_count.inc();
            return Err(Status::invalid_argument(format!(
                "CSR of {} bytes exceeds the limit of {MAX_CSR_BYTES}",
                req.csr_der.len()
            )));
        }
        let domains = shared.ca.domains();
        let identity = if req.join_token.is_empty() {
            // Renewal: the caller's current, verified SVID is the credential. One issued under
            // an alias of the mesh's trust domain (before a migration) is renewed under the
            // mesh's trust domain, same path.
            let current = peer.clone().ok_or_else(|| {
                shared.metrics.authentication_failure_count.inc();
                Status::unauthenticated("a join token or a client certificate is required")
            })?;
            shared.ca.check_not_revoked(&current)?;
            if current.trust_domain() != &domains.mesh && domains.is_local(current.trust_domain()) {
                format!("spiffe://{}{}", domains.mesh, current.path())
                    .parse()
                    .map_err(|e| Status::internal(format!("cannot rename {current}: {e}")))?
            } else {
                current
            }
        } else {
            let grant = shared.tokens.check(&req.join_token).map_err(|e| {
                shared.metrics.authentication_failure_count.inc();
                warn!(error = %e, "join token refused");
                Status::unauthenticated(e.to_string())
            })?;
            SpiffeId::istio(&domains.mesh, &grant.namespace, &grant.service_account)
                .map_err(|e| Status::internal(format!("token grants an invalid identity: {e}")))?
        };
        if crate::reserved_identity(&identity) && peer.as_ref() != Some(&identity) {
            shared.metrics.authentication_failure_count.inc();
            return Err(Status::permission_denied(format!(
                "{identity} is reserved for the control plane"
            )));
        }
        // A revoked identity does not enroll again, join token or not, until an administrator
        // lifts the revocation.
        shared.ca.check_not_revoked(&identity)?;
        let ttl = match req.ttl_seconds {
            0 => None,
            s => Some(Duration::from_secs(s)),
        };
        let issued = shared.ca.sign(&req.csr_der, &identity, ttl).map_err(|e| {
            match sign_error_type(&e) {
                None => shared.metrics.csr_parsing_err_count.inc(),
                Some(error) => shared
                    .metrics
                    .csr_sign_err_count
                    .get_or_create(&ErrorLabel { error })
                    .inc(),
            }
            Status::invalid_argument(e.to_string())
        })?;
        if !req.join_token.is_empty() {
            // Spent only now, so a rejected CSR does not burn the token; a concurrent use of the
            // same token loses here and its certificate is never returned.
            shared
                .tokens
                .spend(&req.join_token)
                .map_err(|e| Status::unauthenticated(e.to_string()))?;
        }
        shared.metrics.success_cert_issuance_count.inc();
        info!(%identity, "certificate issued");
        Ok(Response::new(SignResponse {
            cert_chain_pem: issued.chain_pem(),
            trust_bundle_pem: shared.ca.roots_pem(),
            identity: identity.to_string(),
        }))
    }
}

/// Istio's error type of a CSR that could not be signed (`citadel_server_csr_sign_err_count`'s
/// `error` label); `None` for a CSR that is malformed or carries an unacceptable key, counted
/// in `citadel_server_csr_parsing_err_count` instead.
fn sign_error_type(e: &SignError) -> Option<&'static str> {
    match e {
        SignError::TooLarge { .. }
        | SignError::Malformed(_)
        | SignError::BadSignature(_)
        | SignError::UnsupportedKey(_)
        | SignError::WeakRsaKey { .. } => None,
        SignError::ZeroTtl | SignError::TtlTooLong { .. } | SignError::OutlivesCa { .. } => {
            Some("TTL_ERROR")
        }
        SignError::WrongTrustDomain { .. } => Some("CSR_ERROR"),
        // `Issue`, and whatever the CA learns to refuse later.
        _ => Some("CERT_GEN_ERROR"),
    }
}
