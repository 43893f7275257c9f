//! Istio's MeshConfig, the subset Meshward reads: trust domain and aliases, root namespace,
//! auto-mTLS, path normalization, access logs, the outbound traffic policy.

use serde::{Deserialize, Serialize};

/// Mesh-wide settings with Istio's field names and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshConfig {
    /// The trust domain of workload identities.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Other trust domains treated as this one (migration between domains).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domain_aliases: Vec<String>,
    /// Where mesh-wide policies live.
    #[serde(default = "default_root_namespace")]
    pub root_namespace: String,
    /// Clients originate mesh mTLS to sidecar endpoints when no DestinationRule sets `tls`.
    #[serde(default = "default_true")]
    pub enable_auto_mtls: bool,
    /// How request paths are normalized before authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_normalization: Option<PathNormalization>,
    /// Where proxies write access logs: empty (off, Istio's default) or `/dev/stdout`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_log_file: String,
    /// How access log lines are encoded; TEXT (Envoy's default format) when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_encoding: Option<AccessLogEncoding>,
    /// A custom access log format; only the default (empty) is supported.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_log_format: String,
    /// What sidecars in transparent mode do with connections to addresses outside the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// `outboundTrafficPolicy: {mode: …}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// ALLOW_ANY when missing, as in Istio.
    #[serde(default)]
    pub mode: OutboundTrafficMode,
}

/// `OutboundTrafficPolicy.Mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundTrafficMode {
    /// Connections to unknown destinations are passed through.
    #[default]
    AllowAny,
    /// Only services and workloads of the mesh are reachable.
    RegistryOnly,
}

/// The one access log destination Meshward supports: each proxy's standard output.
pub const ACCESS_LOG_STDOUT: &str = "/dev/stdout";

/// `accessLogEncoding`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessLogEncoding {
    /// Envoy's default text format.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl MeshConfig {
    /// The outbound traffic mode, ALLOW_ANY unless set.
    pub fn outbound_traffic_mode(&self) -> OutboundTrafficMode {
        self.outbound_traffic_policy
            .map(|p| p.mode)
            .unwrap_or_default()
    }

    /// The access log encoding proxies use, `None` when access logs are off.
    pub fn access_log(&self) -> Option<AccessLogEncoding> {
        (!self.access_log_file.is_empty()).then(|| self.access_log_encoding.unwrap_or_default())
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            trust_domain: default_trust_domain(),
            trust_domain_aliases: Vec::new(),
            root_namespace: default_root_namespace(),
            enable_auto_mtls: true,
            path_normalization: None,
            access_log_file: String::new(),
            access_log_encoding: None,
            access_log_format: String::new(),
            outbound_traffic_policy: None,
        }
    }
}

/// `pathNormalization: {normalization: …}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathNormalization {
    /// The normalization; DEFAULT means BASE.
    #[serde(default)]
    pub normalization: NormalizationType,
}

/// `ProxyPathNormalization.NormalizationType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NormalizationType {
    /// Same as BASE.
    #[default]
    Default,
    /// No normalization.
    None,
    /// RFC 3986 normalization.
    Base,
    /// BASE plus merging slashes.
    MergeSlashes,
    /// BASE plus decoding `%2F`/`%5C` and merging slashes.
    DecodeAndMergeSlashes,
}

fn default_trust_domain() -> String {
    "cluster.local".to_owned()
}

fn default_root_namespace() -> String {
    "istio-system".to_owned()
}

fn default_true() -> bool {
    true
}
