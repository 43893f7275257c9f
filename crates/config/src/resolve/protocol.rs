//! Which protocol a port carries, by Istio's rules: "Istio supports … explicit protocol
//! selection: by the `appProtocol` field … by the name of the Service port, `name:
//! <protocol>[-<suffix>]`" (istio.io `ops/configuration/traffic-management/protocol-selection`),
//! and "if the protocol cannot … be determined, … protocol sniffing" — so an unnamed or
//! unrecognized port is detected from its first bytes.

/// What a port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    /// HTTP/1.1, HTTP/2 or gRPC: authorization decides per request.
    Http,
    /// Opaque TCP (TLS, databases, …): authorization decides per connection, even when the
    /// bytes look like HTTP.
    Tcp,
    /// Not declared: detected from the first bytes.
    Detect,
}

/// The protocol of a port from its explicit protocol (`appProtocol`, or the `protocol` of a
/// Meshward Workload port) or else its name. Case-insensitive, as Istio's parser is.
pub fn port_protocol(explicit: Option<&str>, name: Option<&str>) -> PortProtocol {
    if let Some(protocol) = explicit {
        return by_name(protocol);
    }
    match name {
        // `<protocol>[-<suffix>]`: only the part before the first dash names the protocol.
        Some(name) => by_name(name.split('-').next().unwrap_or(name)),
        None => PortProtocol::Detect,
    }
}

/// Istio's protocol names (`protocol.Parse`): the HTTP family, the TCP family, and anything
/// else unknown (sniffed).
fn by_name(name: &str) -> PortProtocol {
    match name.to_ascii_lowercase().as_str() {
        "http" | "http2" | "http_proxy" | "grpc" | "grpc-web" => PortProtocol::Http,
        "tcp" | "tls" | "https" | "mongo" | "mysql" | "redis" | "udp" => PortProtocol::Tcp,
        _ => PortProtocol::Detect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_istio_protocol_selection() {
        let cases = [
            // "name: <protocol>[-<suffix>]"
            (None, Some("http"), PortProtocol::Http),
            (None, Some("http-web"), PortProtocol::Http),
            (None, Some("grpc-api"), PortProtocol::Http),
            (None, Some("HTTP2"), PortProtocol::Http),
            (None, Some("tcp-db"), PortProtocol::Tcp),
            (None, Some("https"), PortProtocol::Tcp),
            (None, Some("mysql"), PortProtocol::Tcp),
            // "appProtocol" wins over the name.
            (Some("http"), Some("tcp"), PortProtocol::Http),
            (Some("TCP"), Some("http"), PortProtocol::Tcp),
            // Unnamed or unrecognized: sniffed.
            (None, None, PortProtocol::Detect),
            (None, Some("web"), PortProtocol::Detect),
            (None, Some("httpx"), PortProtocol::Detect),
        ];
        for (explicit, name, want) in cases {
            assert_eq!(port_protocol(explicit, name), want, "{explicit:?} {name:?}");
        }
    }
}
