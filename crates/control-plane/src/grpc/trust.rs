//! `Trust`: revocation and root rotation for the administrator (`meshward ca …`).

use std::sync::Arc;

use meshward_api::v1::{
    AbortRotationRequest, CaCertificate, CaStatusRequest, CaStatusResponse, ListRevocationsRequest,
    RevocationsResponse, RevokeRequest, RotateRequest, RotationStatus, RotationStatusRequest,
    revoke_request, trust_server::Trust,
};
use meshward_ca::{
    Authority, fingerprint_sha256,
    rotation::{DEFAULT_ROOT_TTL, NewRoot, Phase, check_provided_root, now_ms},
    spki_sha256,
};
use meshward_identity::{SpiffeId, describe};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::{
    Shared, tls,
    trust::{
        revocations::{RevocationList, Target},
        rotation,
    },
};

/// The trust service.
#[derive(Debug, Clone)]
pub(crate) struct TrustService(pub(crate) Arc<Shared>);

impl TrustService {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let caller = tls::require_identity(request)?;
        if caller != self.0.admin_identity {
            return Err(Status::permission_denied(format!(
                "{caller} is not the administrator"
            )));
        }
        Ok(())
    }

    fn revocations(&self, result: String) -> RevocationsResponse {
        RevocationsResponse {
            revocations: self
                .0
                .ca
                .with_revocations(|l| l.entries().iter().map(Into::into).collect()),
            result,
        }
    }
}

fn target(req: &RevokeRequest) -> Result<Target, Status> {
    match &req.target {
        Some(revoke_request::Target::Identity(id)) => {
            let parsed: SpiffeId = id
                .parse()
                .map_err(|e| Status::invalid_argument(format!("{id:?} is not a SPIFFE ID: {e}")))?;
            Ok(Target::Identity(parsed.to_string()))
        }
        Some(revoke_request::Target::Serial(serial)) => Ok(Target::Serial(serial.clone())),
        None => Err(Status::invalid_argument(
            "name a SPIFFE ID or a certificate serial number",
        )),
    }
}

#[tonic::async_trait]
impl Trust for TrustService {
    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevocationsResponse>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let target = target(&req)?;
        if let Target::Identity(id) = &target
            && let Ok(id) = id.parse::<SpiffeId>()
            && crate::reserved_identity(&id)
        {
            return Err(Status::failed_precondition(format!(
                "{id} is the control plane's own identity; revoking it would cut every proxy off"
            )));
        }
        let now = now_ms() / 1000;
        let normalized =
            crate::trust::revocations::normalize(&target).map_err(Status::invalid_argument)?;
        let added = self
            .0
            .ca
            .update_revocations(|list| list.add(target, req.reason.clone(), now))
            .map_err(Status::invalid_argument)?;
        let result = if added {
            info!(revoked = %normalized, reason = %req.reason, "revoked");
            format!("revoked {normalized}")
        } else {
            format!("{normalized} was already revoked")
        };
        Ok(Response::new(self.revocations(result)))
    }

    async fn unrevoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevocationsResponse>, Status> {
        self.authorize(&request)?;
        let target = target(&request.into_inner())?;
        let normalized =
            crate::trust::revocations::normalize(&target).map_err(Status::invalid_argument)?;
        let removed = self
            .0
            .ca
            .update_revocations(|list| list.remove(&target))
            .map_err(Status::invalid_argument)?;
        let result = if removed {
            info!(unrevoked = %normalized, "revocation lifted");
            format!("lifted the revocation of {normalized}")
        } else {
            return Err(Status::not_found(format!("{normalized} is not revoked")));
        };
        Ok(Response::new(self.revocations(result)))
    }

    async fn list_revocations(
        &self,
        request: Request<ListRevocationsRequest>,
    ) -> Result<Response<RevocationsResponse>, Status> {
        self.authorize(&request)?;
        Ok(Response::new(self.revocations(String::new())))
    }

    async fn rotate(
        &self,
        request: Request<RotateRequest>,
    ) -> Result<Response<RotationStatus>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let shared = &self.0;
        let _rotating = shared.ca.rotation_lock();
        if let Some(state) = shared.ca.rotation().filter(|s| !s.phase.is_terminal()) {
            // Resume: the rotation in force goes on (with the root it started with); say where
            // it stands.
            let mut status = rotation::status(shared, Some(&state));
            status.plan = vec![format!(
                "a rotation is already in progress ({}); following it",
                state.phase
            )];
            return Ok(Response::new(status));
        }
        let source = match (
            req.generate,
            req.new_root_file.is_empty(),
            req.new_key_file.is_empty(),
        ) {
            (true, true, true) => Some(NewRoot::Generate {
                ttl: DEFAULT_ROOT_TTL,
            }),
            (false, false, false) => Some(NewRoot::Provided {
                cert: req.new_root_file.clone().into(),
                key: req.new_key_file.clone().into(),
            }),
            (false, true, true) if req.plan => None,
            _ => {
                return Err(Status::invalid_argument(
                    "give either --generate or both --new-root FILE and --new-key FILE",
                ));
            }
        };
        if req.plan {
            return Ok(Response::new(RotationStatus {
                plan: plan(shared, source.as_ref())?,
                proxies: readiness(shared),
                ..RotationStatus::default()
            }));
        }
        let Some(source) = source else {
            return Err(Status::invalid_argument("no new root given"));
        };
        let old = shared.ca.current();
        let state = shared
            .ca
            .files()
            .prepare(&old, &source, now_ms())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        rotation::commit(shared, state.clone()).map_err(Status::internal)?;
        Ok(Response::new(rotation::status(shared, Some(&state))))
    }

    async fn rotation_status(
        &self,
        request: Request<RotationStatusRequest>,
    ) -> Result<Response<RotationStatus>, Status> {
        self.authorize(&request)?;
        let state = self.0.ca.rotation();
        Ok(Response::new(rotation::status(&self.0, state.as_ref())))
    }

    async fn abort_rotation(
        &self,
        request: Request<AbortRotationRequest>,
    ) -> Result<Response<RotationStatus>, Status> {
        self.authorize(&request)?;
        let shared = &self.0;
        let _rotating = shared.ca.rotation_lock();
        let Some(mut state) = shared.ca.rotation() else {
            return Err(Status::failed_precondition("no rotation was ever started"));
        };
        state
            .abort(now_ms())
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        rotation::commit(shared, state.clone()).map_err(Status::internal)?;
        Ok(Response::new(rotation::status(shared, Some(&state))))
    }

    async fn ca_status(
        &self,
        request: Request<CaStatusRequest>,
    ) -> Result<Response<CaStatusResponse>, Status> {
        self.authorize(&request)?;
        let shared = &self.0;
        let authority = shared.ca.current();
        Ok(Response::new(CaStatusResponse {
            trust_domain: shared.trust_domain.to_string(),
            certificates: chain(&authority),
            load_error: shared.ca.load_error().unwrap_or_default(),
            not_ready: crate::trust::not_ready(shared),
            rotation_phase: shared
                .ca
                .rotation()
                .map(|s| s.phase.as_str().to_owned())
                .unwrap_or_default(),
            revocations: shared
                .ca
                .with_revocations(|l: &RevocationList| l.entries().len())
                .try_into()
                .unwrap_or(u32::MAX),
        }))
    }
}

/// The signing certificate, what leaves carry above it, and every trusted root, each with
/// its role.
fn chain(authority: &Authority) -> Vec<CaCertificate> {
    let signer_key = authority.signer_key_sha256();
    let roots = authority.trust_bundle().roots();
    let mut seen = Vec::new();
    let mut out = Vec::new();
    let certs = std::iter::once(authority.signing_cert())
        .chain(authority.chain_above())
        .chain(roots);
    for der in certs {
        if seen.contains(&der) {
            continue;
        }
        seen.push(der);
        let Ok(info) = describe(der) else { continue };
        let signs = der == authority.signing_cert();
        let same_key = spki_sha256(der.as_ref()).is_some_and(|k| k == signer_key);
        let role = if signs {
            "signing"
        } else if same_key {
            "cross-signed"
        } else if roots.contains(der) {
            "root"
        } else {
            "intermediate"
        };
        out.push(CaCertificate {
            role: role.to_owned(),
            subject: info.subject,
            serial: info.serial,
            fingerprint: fingerprint_sha256(der.as_ref()),
            not_before: x509_parser::parse_x509_certificate(der.as_ref())
                .map(|(_, c)| c.validity().not_before.timestamp())
                .unwrap_or_default(),
            not_after: info.not_after_unix,
            signs,
        });
    }
    out
}

/// What a rotation would do now.
fn plan(shared: &Shared, source: Option<&NewRoot>) -> Result<Vec<String>, Status> {
    let authority = shared.ca.current();
    let proxies = shared.ca.expected().map_or(0, |e| e.len());
    let mut lines = vec![format!(
        "rotate the root of trust domain {}",
        shared.trust_domain
    )];
    for root in authority.trust_bundle().roots() {
        let info = describe(root).map_err(|e| Status::internal(e.to_string()))?;
        lines.push(format!(
            "  old root:  {} (SHA256 {}, expires {})",
            info.subject,
            fingerprint_sha256(root.as_ref()),
            info.not_after
        ));
    }
    match source {
        None => lines.push("  new root:  (give --generate or --new-root/--new-key)".to_owned()),
        Some(NewRoot::Generate { ttl }) => lines.push(format!(
            "  new root:  generated here, ECDSA P-256, valid {} days",
            ttl.as_secs() / 86_400
        )),
        Some(NewRoot::Provided { cert, key }) => {
            let (subject, fp) = check_provided_root(cert, key, &shared.trust_domain)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            lines.push(format!(
                "  new root:  {subject} (SHA256 {fp}), from {}",
                cert.display()
            ));
        }
    }
    let signer = describe(authority.signing_cert())
        .map(|i| i.subject)
        .unwrap_or_default();
    lines.push(format!(
        "  signing:   {signer} -> a new intermediate under the new root, cross-signed by it"
    ));
    for phase in [
        Phase::AddRoot,
        Phase::SwitchSigner,
        Phase::Reissue,
        Phase::RemoveOld,
    ] {
        let wait = match phase.gate() {
            meshward_ca::rotation::Gate::None => "no wait".to_owned(),
            meshward_ca::rotation::Gate::BundleInstalled => {
                format!("waits until all {proxies} proxies have installed the bundle")
            }
            meshward_ca::rotation::Gate::Reissued => {
                format!("waits until all {proxies} proxies hold a certificate from the new signer")
            }
        };
        lines.push(format!(
            "stage {}: {} ({wait})",
            phase.stage().unwrap_or_default(),
            phase.describe()
        ));
    }
    lines.push(
        "abort at any stage: `meshward ca rotate --abort` walks back to the old CA".to_owned(),
    );
    Ok(lines)
}

/// Who would hold a gate up right now: proxies that are not connected or never reported.
fn readiness(shared: &Shared) -> Vec<meshward_api::v1::ProxyGate> {
    let reports = shared.ca.reports();
    let connected: std::collections::BTreeMap<String, bool> = shared
        .registry
        .snapshot()
        .into_iter()
        .map(|r| (r.workload, r.connected))
        .collect();
    shared
        .ca
        .expected()
        .unwrap_or_default()
        .into_iter()
        .map(|workload| {
            let reported = reports.contains_key(&workload);
            let up = connected.get(&workload).copied().unwrap_or(false);
            let detail = match (up, reported) {
                (true, true) => "connected and reporting".to_owned(),
                (true, false) => "connected, but not reporting what it holds".to_owned(),
                (false, _) => "not connected: it would block every stage".to_owned(),
            };
            meshward_api::v1::ProxyGate {
                passed: up && reported,
                workload,
                detail,
            }
        })
        .collect()
}
