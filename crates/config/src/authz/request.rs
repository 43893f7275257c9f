//! [`RequestAttrs`]: what the engine knows about a connection and, on HTTP ports, the request.
//! The caller fills it in: the proxy from the TLS handshake and the parsed request, the CLI from
//! its flags.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The attributes a policy can match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAttrs {
    /// The peer's SPIFFE ID without `spiffe://` (`cluster.local/ns/foo/sa/bar`); `None` for
    /// plaintext.
    pub source_principal: Option<String>,
    /// The `ns` segment of the peer's SPIFFE ID; `None` for plaintext.
    pub source_namespace: Option<String>,
    /// The address of the downstream connection.
    pub source_ip: IpAddr,
    /// The original client address (PROXY protocol / X-Forwarded-For), when known; the source
    /// address otherwise.
    pub remote_ip: Option<IpAddr>,
    /// The address the connection was made to.
    pub destination_ip: IpAddr,
    /// The port the connection was made to.
    pub destination_port: u16,
    /// The TLS server name the client sent, if any.
    pub sni: Option<String>,
    /// The request, when the port carries HTTP; `None` for a TCP connection.
    pub http: Option<HttpAttrs>,
}

/// The HTTP attributes of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpAttrs {
    /// The `Host` / `:authority`, port included when the client sent one.
    pub host: String,
    /// The method (`POST` for every gRPC call).
    pub method: String,
    /// The normalized path, without the query string.
    pub path: String,
    /// Request headers, names in any case; a repeated header appears once per value.
    pub headers: Vec<(String, String)>,
}

impl RequestAttrs {
    /// A plaintext TCP connection.
    pub fn new(source_ip: IpAddr, destination_ip: IpAddr, destination_port: u16) -> RequestAttrs {
        RequestAttrs {
            source_principal: None,
            source_namespace: None,
            source_ip,
            remote_ip: None,
            destination_ip,
            destination_port,
            sni: None,
            http: None,
        }
    }

    /// The connection with an mTLS peer: its SPIFFE ID, with or without `spiffe://`. The
    /// namespace is the segment after `/ns/` (istio `pkg/spiffe`: "segment[1] == ns").
    pub fn with_peer(mut self, spiffe_id: &str) -> RequestAttrs {
        let principal = spiffe_id.strip_prefix("spiffe://").unwrap_or(spiffe_id);
        let segments: Vec<&str> = principal.split('/').collect();
        self.source_namespace = match segments.as_slice() {
            [_, "ns", namespace, "sa", _] => Some((*namespace).to_owned()),
            _ => None,
        };
        self.source_principal = Some(principal.to_owned());
        self
    }

    /// The same connection carrying this HTTP request.
    pub fn with_http(mut self, http: HttpAttrs) -> RequestAttrs {
        self.http = Some(http);
        self
    }

    /// `remote.ip`: the original client address, the source address when none is known.
    pub(crate) fn remote_ip(&self) -> IpAddr {
        self.remote_ip.unwrap_or(self.source_ip)
    }
}

impl HttpAttrs {
    /// The value of a header (names are case-insensitive); repeated headers are joined with
    /// `,`, as Envoy's header matcher sees them.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self
            .headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str());
        let first = values.next()?;
        Some(values.fold(first.to_owned(), |mut joined, value| {
            joined.push(',');
            joined.push_str(value);
            joined
        }))
    }
}
