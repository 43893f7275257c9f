//! Cross-resource findings, as `istioctl analyze` reports them: one [`Finding`] per problem,
//! with Istio's `ISTxxxx` code where Istio has one and a Meshward `MWxxxx` code where it has
//! none (notably the DestinationRule vs PeerAuthentication mTLS conflict that Istio retired as
//! IST0113). Pure functions over parsed documents; every code is listed in [`CODES`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::diagnostic::{Location, Severity};
use crate::mesh::{Mesh, MeshError};
use crate::meta::ResourceKey;
use crate::parse::{Document, ParsedStream};

mod destination_rules;
mod ignored;
mod injection;
mod mtls_conflict;
mod selectors;

#[cfg(test)]
mod tests;

/// An analyzer message type: its code, Istio's name for it and its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// `IST0102`, `MW0001`, ….
    pub id: &'static str,
    /// The message name, e.g. `NamespaceNotInjected`.
    pub name: &'static str,
    /// Its level.
    pub level: Severity,
}

impl Code {
    const fn new(id: &'static str, name: &'static str, level: Severity) -> Code {
        Code { id, name, level }
    }
}

/// IST0101: a resource refers to something that does not exist (a Gateway selector, an
/// AuthorizationPolicy source namespace).
pub const REFERENCED_RESOURCE_NOT_FOUND: Code =
    Code::new("IST0101", "ReferencedResourceNotFound", Severity::Error);
/// IST0102: a namespace carries no injection label.
pub const NAMESPACE_NOT_INJECTED: Code =
    Code::new("IST0102", "NamespaceNotInjected", Severity::Info);
/// IST0103: a workload in an injected namespace runs without its proxy.
pub const POD_MISSING_PROXY: Code = Code::new("IST0103", "PodMissingProxy", Severity::Warning);
/// IST0106: a document does not parse or fails validation.
pub const SCHEMA_VALIDATION_ERROR: Code =
    Code::new("IST0106", "SchemaValidationError", Severity::Error);
/// IST0127: a policy selector matches no workload.
pub const NO_MATCHING_WORKLOADS_FOUND: Code =
    Code::new("IST0127", "NoMatchingWorkloadsFound", Severity::Warning);
/// IST0128: SIMPLE/MUTUAL TLS without a CA to verify the server (whole destination).
pub const NO_SERVER_CERT_VERIFICATION_DESTINATION: Code = Code::new(
    "IST0128",
    "NoServerCertificateVerificationDestinationLevel",
    Severity::Warning,
);
/// IST0129: SIMPLE/MUTUAL TLS without a CA to verify the server (one port).
pub const NO_SERVER_CERT_VERIFICATION_PORT: Code = Code::new(
    "IST0129",
    "NoServerCertificateVerificationPortLevel",
    Severity::Warning,
);
/// IST0133: a document is accepted with a warning.
pub const SCHEMA_WARNING: Code = Code::new("IST0133", "SchemaWarning", Severity::Warning);
/// IST0173: a DestinationRule subset selects no workload of its host.
pub const SUBSET_SELECTS_NO_PODS: Code = Code::new(
    "IST0173",
    "DestinationRuleSubsetNotSelectPods",
    Severity::Error,
);
/// IST0174: a DestinationRule host names no service of the mesh.
pub const UNKNOWN_DESTINATION_RULE_HOST: Code =
    Code::new("IST0174", "UnknownDestinationRuleHost", Severity::Warning);
/// MW0001: the TLS a DestinationRule makes clients originate cannot be accepted by the server.
pub const MTLS_CONFLICT: Code = Code::new("MW0001", "MtlsConflict", Severity::Error);

/// MW0002: a PeerAuthentication that Istio ignores.
pub const IGNORED_PEER_AUTHENTICATION: Code =
    Code::new("MW0002", "IgnoredPeerAuthentication", Severity::Warning);

/// Every code `analyze` can report.
pub const CODES: [Code; 12] = [
    REFERENCED_RESOURCE_NOT_FOUND,
    NAMESPACE_NOT_INJECTED,
    POD_MISSING_PROXY,
    SCHEMA_VALIDATION_ERROR,
    NO_MATCHING_WORKLOADS_FOUND,
    NO_SERVER_CERT_VERIFICATION_DESTINATION,
    NO_SERVER_CERT_VERIFICATION_PORT,
    SCHEMA_WARNING,
    SUBSET_SELECTS_NO_PODS,
    UNKNOWN_DESTINATION_RULE_HOST,
    MTLS_CONFLICT,
    IGNORED_PEER_AUTHENTICATION,
];

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error, Warning or Info.
    pub level: Severity,
    /// The code, e.g. `IST0102`.
    pub code: &'static str,
    /// The message name, e.g. `NamespaceNotInjected`.
    pub name: &'static str,
    /// The resource, `Kind namespace/name` (`Kind name` when cluster-scoped).
    pub origin: String,
    /// Where the resource is written, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
}

impl Finding {
    fn new(code: Code, origin: String, location: Option<Location>, message: String) -> Finding {
        Finding {
            level: code.level,
            code: code.id,
            name: code.name,
            origin,
            location,
            message,
        }
    }
}

/// istioctl's line: `Level [CODE] (Kind ns/name file:line) message`.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}] ({}", self.level, self.code, self.origin)?;
        if let Some(location) = &self.location {
            write!(f, " {}:{}", location.source, location.line)?;
        }
        write!(f, ") {}", self.message)
    }
}

/// Reports the documents of `stream` that failed validation (IST0106) or passed with a warning
/// (IST0133), so one run of `analyze` shows every problem of a directory.
pub fn schema_findings(stream: &ParsedStream) -> Vec<Finding> {
    let mut findings = Vec::new();
    for error in &stream.errors {
        findings.push(Finding::new(
            SCHEMA_VALIDATION_ERROR,
            "stream".to_owned(),
            error.location.clone(),
            format!("Schema validation error: {}", error.message),
        ));
    }
    for document in &stream.documents {
        let origin = document
            .resource
            .clone()
            .unwrap_or_else(|| "document".to_owned());
        for diagnostic in &document.diagnostics {
            let (code, prefix) = match diagnostic.severity {
                Severity::Error => (SCHEMA_VALIDATION_ERROR, "Schema validation error"),
                Severity::Warning | Severity::Info => (SCHEMA_WARNING, "Schema validation warning"),
            };
            let field = diagnostic
                .path
                .as_ref()
                .map(|path| format!("{path}: "))
                .unwrap_or_default();
            findings.push(Finding::new(
                code,
                origin.clone(),
                diagnostic
                    .location
                    .clone()
                    .or_else(|| Some(document.location.clone())),
                format!("{prefix}: {field}{}", diagnostic.message),
            ));
        }
    }
    findings
}

/// Runs every analyzer over the valid documents of a configuration. Fails only when two
/// documents define the same resource. Findings come sorted: errors first, then by code and
/// resource.
pub fn analyze(documents: &[Document]) -> Result<Vec<Finding>, MeshError> {
    let mesh = Mesh::new(documents.iter().cloned())?;
    let locations = documents
        .iter()
        .map(|d| (d.resource.key(), d.location.clone()))
        .collect();
    let mut context = Context {
        mesh: &mesh,
        locations,
        findings: Vec::new(),
    };
    injection::namespaces(&mut context);
    injection::workloads(&mut context);
    selectors::policies(&mut context);
    selectors::gateways(&mut context);
    selectors::policy_namespaces(&mut context);
    destination_rules::hosts_and_subsets(&mut context);
    destination_rules::ca_certificates(&mut context);
    mtls_conflict::destination_rules(&mut context);
    ignored::peer_authentications(&mut context);
    let mut findings = context.findings;
    sort(&mut findings);
    Ok(findings)
}

/// Errors first, then by code, resource and message.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (a.level, a.code, &a.origin, &a.message).cmp(&(b.level, b.code, &b.origin, &b.message))
    });
}

/// What analyzers read and where they report.
struct Context<'a> {
    mesh: &'a Mesh,
    locations: BTreeMap<ResourceKey, Location>,
    findings: Vec<Finding>,
}

impl Context<'_> {
    fn report(&mut self, code: Code, resource: &ResourceKey, message: String) {
        let location = self.locations.get(resource).cloned();
        self.findings
            .push(Finding::new(code, resource.to_string(), location, message));
    }
}
