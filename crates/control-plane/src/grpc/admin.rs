//! `Admin`: the administrator's API — apply, list and delete resources, proxy status, tokens.
//!
//! Every call requires the administrator's client certificate; nothing else gets in.

use std::{sync::Arc, time::Duration};

use meshward_api::v1::{
    ApplyRequest, ApplyResponse, CreateTokenRequest, CreateTokenResponse, DeleteRequest,
    DeleteResponse, ListRequest, ListResponse, ProxyStatusRequest, ProxyStatusResponse, Resource,
    SourceFile, admin_server::Admin,
};
use meshward_config::{Document, Kind, ResourceKey};
use meshward_identity::SpiffeId;
use meshward_store::{Store, StoreError};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::{Shared, tls};

/// Longest join-token lifetime an administrator may ask for.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Largest apply request (all files together).
const MAX_APPLY_BYTES: usize = 16 * 1024 * 1024;

/// The admin service.
#[derive(Debug, Clone)]
pub(crate) struct AdminService(pub(crate) Arc<Shared>);

impl AdminService {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let caller = tls::require_identity(request)?;
        if caller != self.0.admin_identity {
            return Err(Status::permission_denied(format!(
                "{caller} is not the administrator"
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        self.authorize(&request)?;
        let files = request.into_inner().files;
        let size: usize = files.iter().map(|f| f.content.len()).sum();
        if size > MAX_APPLY_BYTES {
            return Err(Status::invalid_argument(format!(
                "{size} bytes is more than the {MAX_APPLY_BYTES}-byte limit of one apply"
            )));
        }
        let shared = self.0.clone();
        let outcome = tokio::task::spawn_blocking(move || apply_files(&shared, &files))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(outcome))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let kind = parse_kind(&req.kind)?;
        let namespace = (!req.namespace.is_empty()).then_some(req.namespace.as_str());
        let resources = self
            .0
            .store
            .list(Some(kind), namespace)
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .filter(|doc| req.name.is_empty() || doc.resource.metadata().name == req.name)
            .map(|doc| to_wire(&doc))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(ListResponse {
            resources,
            revision: self.0.store.revision().0,
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let key = ResourceKey {
            kind: parse_kind(&req.kind)?,
            namespace: req.namespace.clone(),
            name: req.name.clone(),
        };
        let existed = self
            .0
            .store
            .delete(&key)
            .map_err(|e| Status::internal(e.to_string()))?;
        if existed {
            self.0.hub.config_changed();
        } else {
            return Err(Status::not_found(format!(
                "{} {}/{} not found",
                key.kind, key.namespace, key.name
            )));
        }
        info!(kind = %key.kind, namespace = %key.namespace, name = %key.name, "resource deleted");
        Ok(Response::new(DeleteResponse {
            revision: self.0.store.revision().0,
        }))
    }

    async fn proxy_status(
        &self,
        request: Request<ProxyStatusRequest>,
    ) -> Result<Response<ProxyStatusResponse>, Status> {
        self.authorize(&request)?;
        let proxies = self
            .0
            .registry
            .snapshot()
            .into_iter()
            .map(Into::into)
            .collect();
        Ok(Response::new(ProxyStatusResponse {
            proxies,
            revision: self.0.store.revision().0,
        }))
    }

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let ttl = Duration::from_secs(req.ttl_seconds);
        if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
            return Err(Status::invalid_argument(format!(
                "ttl_seconds must be between 1 and {}",
                MAX_TOKEN_TTL.as_secs()
            )));
        }
        let id = SpiffeId::istio(
            &self.0.ca.domains().mesh,
            &req.namespace,
            &req.service_account,
        )
        .map_err(|e| Status::invalid_argument(format!("namespace/service_account: {e}")))?;
        if crate::reserved_identity(&id) {
            return Err(Status::permission_denied(format!(
                "{id} is reserved for the control plane"
            )));
        }
        let (token, expires) = self
            .0
            .tokens
            .create(&req.namespace, &req.service_account, ttl)
            .map_err(|e| Status::internal(e.to_string()))?;
        info!(identity = %id, "join token created");
        Ok(Response::new(CreateTokenResponse {
            token,
            expires: i64::try_from(expires).unwrap_or(i64::MAX),
        }))
    }
}

fn parse_kind(name: &str) -> Result<Kind, Status> {
    Kind::from_name(name).ok_or_else(|| Status::invalid_argument(format!("unknown kind {name:?}")))
}

/// Applies every file as one change: one bad document anywhere means nothing is applied, and
/// every error is reported, not just the first.
pub(crate) fn apply_files(shared: &Shared, files: &[SourceFile]) -> Result<ApplyResponse, Status> {
    let pairs: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.name.clone(), f.content.clone()))
        .collect();
    let applied = shared
        .store
        .apply_files(&pairs)
        .map_err(|e| Status::invalid_argument(store_error(&e)))?;
    if !applied.created.is_empty() || !applied.updated.is_empty() {
        shared.hub.config_changed();
    }
    let mut response = ApplyResponse {
        revision: applied.revision.0,
        results: Vec::new(),
    };
    for (keys, verb) in [
        (&applied.created, "created"),
        (&applied.updated, "configured"),
        (&applied.unchanged, "unchanged"),
    ] {
        response.results.extend(
            keys.iter()
                .map(|k| format!("{}/{} {verb}", k.kind.as_str().to_ascii_lowercase(), k.name)),
        );
    }
    info!(revision = response.revision, "configuration applied");
    Ok(response)
}

fn store_error(e: &StoreError) -> String {
    match e {
        StoreError::Invalid(diagnostics) => diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// A stored document as the API returns it: its text as JSON, its age from
/// `creationTimestamp`.
fn to_wire(doc: &Document) -> Result<Resource, Status> {
    let metadata = doc.resource.metadata();
    let json: serde_json::Value = serde_saphyr::from_str(&doc.text)
        .map_err(|e| Status::internal(format!("stored document unreadable: {e}")))?;
    let created = metadata
        .creation_timestamp
        .as_deref()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(0, |t| t.unix_timestamp());
    Ok(Resource {
        kind: doc.resource.kind().as_str().to_owned(),
        api_version: json["apiVersion"].as_str().unwrap_or_default().to_owned(),
        namespace: doc.resource.key().namespace,
        name: metadata.name.clone(),
        json: json.to_string(),
        created,
    })
}
