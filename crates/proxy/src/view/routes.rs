//! A service's VirtualService routes, as the control plane compiled them for this workload:
//! HTTP routes matched by path, headers, method and port, each to weighted destinations (a
//! service, port and subset) with a timeout, retries and injected faults; TCP routes by port.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use meshward_api::v1 as pb;
use regex::Regex;
use serde::{Serialize, Serializer};

use super::proto::InvalidView;

/// How a string is matched.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// The whole value matches (RE2 syntax).
    Regex(Regex),
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Exact(v) => s.collect_str(&format_args!("exact:{v}")),
            Self::Prefix(v) => s.collect_str(&format_args!("prefix:{v}")),
            Self::Regex(r) => s.collect_str(&format_args!("regex:{}", r.as_str())),
        }
    }
}

impl Matcher {
    fn matches(&self, value: &str, ignore_case: bool) -> bool {
        match self {
            Self::Exact(v) if ignore_case => v.eq_ignore_ascii_case(value),
            Self::Exact(v) => v == value,
            Self::Prefix(v) if ignore_case => value
                .get(..v.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(v)),
            Self::Prefix(v) => value.starts_with(v.as_str()),
            Self::Regex(r) => r.is_match(value),
        }
    }

    fn from_proto(m: &pb::StringMatchView, at: &str) -> Result<Self, InvalidView> {
        use pb::string_match_view::Kind;
        match &m.kind {
            Some(Kind::Exact(v)) => Ok(Self::Exact(v.clone())),
            Some(Kind::Prefix(v)) => Ok(Self::Prefix(v.clone())),
            // Envoy's safe_regex matches the whole value.
            Some(Kind::Regex(v)) => Regex::new(&format!("^(?:{v})$"))
                .map(Self::Regex)
                .map_err(|e| super::proto::field(at, format!("regex `{v}`: {e}"))),
            None => Err(super::proto::field(at, "empty string match")),
        }
    }
}

/// What a route match looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The path, without the query.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The URI scheme.
    pub scheme: &'a str,
    /// The Host (authority) the client sent.
    pub authority: &'a str,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The method.
    pub method: &'a Method,
    /// The destination port.
    pub port: u16,
}

/// One `match` of an HTTP route: every condition set holds.
#[derive(Debug, Clone, Serialize)]
pub struct HttpMatch {
    uri: Option<Matcher>,
    #[serde(serialize_with = "header_names")]
    headers: Vec<(HeaderName, Matcher)>,
    method: Option<Matcher>,
    port: Option<u16>,
    ignore_uri_case: bool,
    scheme: Option<Matcher>,
    authority: Option<Matcher>,
    query: Vec<(String, Matcher)>,
}

fn header_names<S: Serializer>(h: &[(HeaderName, Matcher)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(h.iter().map(|(name, m)| (name.as_str(), m)))
}

impl HttpMatch {
    fn matches(&self, r: &RequestFacts<'_>) -> bool {
        self.port.is_none_or(|p| p == r.port)
            && self
                .uri
                .as_ref()
                .is_none_or(|m| m.matches(r.path, self.ignore_uri_case))
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.matches(r.method.as_str(), false))
            && self
                .scheme
                .as_ref()
                .is_none_or(|m| m.matches(r.scheme, false))
            && self
                .authority
                .as_ref()
                .is_none_or(|m| m.matches(r.authority, false))
            && self.headers.iter().all(|(name, m)| {
                r.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| m.matches(v, false))
            })
            && self
                .query
                .iter()
                .all(|(name, m)| query_param(r.query, name).is_some_and(|v| m.matches(v, false)))
    }
}

/// The first value of the query parameter `name` (`""` for `?name` without `=`), as sent.
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((key, value)) => (key == name).then_some(value),
            None => (pair == name).then_some(""),
        })
}

/// Where a route sends traffic, and how much of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Weighted {
    /// A full service name of the view.
    pub host: String,
    /// The port; `None`: the one the client asked for.
    pub port: Option<u16>,
    /// A DestinationRule subset.
    pub subset: Option<String>,
    /// Share, out of the route's total.
    pub weight: u32,
    /// Changes to the request when this destination is drawn (before the route's).
    pub request_headers: HeaderOps,
    /// Changes to the response when this destination is drawn (before the route's).
    pub response_headers: HeaderOps,
}

/// When a try is retried (Envoy's `retry_on`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryOn {
    /// Any 5xx, connect failures and resets (`5xx`).
    pub server_error: bool,
    /// 502, 503, 504 (`gateway-error`).
    pub gateway_error: bool,
    /// No answer: reset or connect failure (`reset`, `refused-stream`).
    pub reset: bool,
    /// The connection could not be made (`connect-failure`).
    pub connect_failure: bool,
    /// These statuses (`retriable-status-codes` with numbers; 409 for `retriable-4xx`).
    pub statuses: Vec<u16>,
}

impl RetryOn {
    /// Parses `retryOn`; empty is Istio's default: "connect-failure, refused-stream,
    /// unavailable, cancelled, retriable-status-codes" with 503 retriable.
    pub fn parse(text: &str) -> Self {
        let mut on = Self::default();
        let text = if text.trim().is_empty() {
            "connect-failure,refused-stream,retriable-status-codes,503"
        } else {
            text
        };
        for condition in text.split(',').map(str::trim) {
            match condition {
                "5xx" => on.server_error = true,
                "gateway-error" => on.gateway_error = true,
                "reset" | "refused-stream" => on.reset = true,
                "connect-failure" => on.connect_failure = true,
                "retriable-4xx" => on.statuses.push(409),
                other => on.statuses.extend(other.parse::<u16>().ok()),
            }
        }
        on
    }

    /// Whether an answer with `status` is retried.
    pub fn status(&self, status: u16) -> bool {
        (self.server_error && status >= 500)
            || (self.gateway_error && matches!(status, 502..=504))
            || self.statuses.contains(&status)
    }

    /// Whether a try that got no answer is retried (`connected`: the connection was made).
    pub fn failure(&self, connected: bool) -> bool {
        self.server_error
            || self.reset
            || (!connected && self.connect_failure)
            || (!connected && self.gateway_error)
    }
}

/// Retries of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retries {
    /// Tries after the first.
    pub attempts: u32,
    /// Timeout of each try.
    pub per_try_timeout: Option<Duration>,
    /// When.
    pub on: RetryOn,
}

impl Retries {
    /// Istio's retry policy for a route without `retries`, and for requests to a service
    /// without a VirtualService: two retries on connect failures, resets and 503
    /// (`retry.DefaultPolicy` in Istio's pilot).
    pub fn istio_default() -> Self {
        Self {
            attempts: 2,
            per_try_timeout: None,
            on: RetryOn::parse(""),
        }
    }
}

/// One HTTP route.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRoute {
    /// Its name, for logs.
    pub name: String,
    matches: Vec<HttpMatch>,
    /// Destinations (weights out of their sum).
    pub destinations: Vec<Weighted>,
    /// The whole request, retries included.
    pub timeout: Option<Duration>,
    /// Retries.
    pub retries: Option<Retries>,
    /// Injected delay and the share of requests it applies to (percent).
    pub delay: Option<(Duration, f64)>,
    /// Injected answer and the share of requests it applies to (percent).
    pub abort: Option<(u16, f64)>,
    /// Changes to the request's headers (`headers.request`).
    pub request_headers: HeaderOps,
    /// Changes to the response's headers (`headers.response`).
    pub response_headers: HeaderOps,
    /// `rewrite.uri`.
    pub rewrite_uri: Option<String>,
    /// `rewrite.authority`: the Host sent upstream.
    #[serde(serialize_with = "optional_value")]
    pub rewrite_authority: Option<HeaderValue>,
    /// `redirect` or `directResponse`: the sidecar answers instead of forwarding.
    pub local: Option<LocalReply>,
}

/// An answer a route gives itself.
#[derive(Debug, Clone, Serialize)]
pub enum LocalReply {
    /// `redirect`: `None` keeps what the request had.
    Redirect {
        /// The whole new path (a query in it replaces the request's).
        uri: Option<String>,
        /// The new Host.
        authority: Option<String>,
        /// The new port; `port_from_request`: the request's; neither: the scheme's default
        /// when `authority` is set, else the request's.
        port: Option<u16>,
        /// `derivePort: FROM_REQUEST_PORT`.
        port_from_request: bool,
        /// The new scheme.
        scheme: Option<String>,
        /// 301, 302, 303, 307 or 308.
        code: u16,
    },
    /// `directResponse`.
    Direct {
        /// The status.
        status: u16,
        /// The body.
        #[serde(serialize_with = "lossy_text")]
        body: bytes::Bytes,
    },
}

impl LocalReply {
    /// The `Location` of a redirect of a request for `path`/`query` sent to `authority`
    /// (`host[:port]`) over `scheme`; `None` for a direct response.
    pub fn location(
        &self,
        scheme: &str,
        authority: &str,
        path: &str,
        query: Option<&str>,
    ) -> Option<String> {
        let Self::Redirect {
            uri,
            authority: new_authority,
            port,
            port_from_request,
            scheme: new_scheme,
            ..
        } = self
        else {
            return None;
        };
        let (host, request_port) = split_port(authority);
        let host = match new_authority {
            Some(a) => split_port(a).0,
            None => host,
        };
        let port = match (port, port_from_request, new_authority) {
            (Some(p), _, _) => Some(p.to_string()),
            (None, true, _) => request_port.map(str::to_owned),
            (None, false, Some(a)) => split_port(a).1.map(str::to_owned),
            (None, false, None) => request_port.map(str::to_owned),
        };
        let mut out = format!("{}://{host}", new_scheme.as_deref().unwrap_or(scheme));
        if let Some(port) = port {
            out.push(':');
            out.push_str(&port);
        }
        match uri {
            Some(uri) => out.push_str(uri),
            None => out.push_str(path),
        }
        if let Some(query) = query
            && !uri.as_deref().is_some_and(|u| u.contains('?'))
        {
            out.push('?');
            out.push_str(query);
        }
        Some(out)
    }
}

/// `host:port` as (host, port); IPv6 literals keep their brackets.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !host.ends_with(':') =>
        {
            (host, Some(port))
        }
        _ => (authority, None),
    }
}

fn lossy_text<S: Serializer>(body: &bytes::Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

impl HttpRoute {
    /// Whether a request selects this route.
    pub fn matches(&self, request: &RequestFacts<'_>) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(request))
    }

    /// `path` after `rewrite.uri`, for a request this route selected (`None`: no rewrite).
    /// As Envoy's `prefix_rewrite`, which Istio uses: the prefix that the selecting match
    /// matched is replaced — `/` when it has no uri condition — or the whole path when it
    /// matched exactly. The query string is kept.
    pub fn rewrite_path(&self, request: &RequestFacts<'_>) -> Option<String> {
        let to = self.rewrite_uri.as_deref()?;
        let (path, query) = (request.path, request.query);
        let uri = self
            .matches
            .iter()
            .find(|m| m.matches(request))
            .and_then(|m| m.uri.as_ref());
        let rest = match uri {
            Some(Matcher::Prefix(prefix)) => path.get(prefix.len()..).unwrap_or_default(),
            // Validation refuses a path rewrite after a regex match.
            Some(Matcher::Exact(_) | Matcher::Regex(_)) => "",
            None => path.strip_prefix('/').unwrap_or(path),
        };
        let mut out = format!("{to}{rest}");
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        Some(out)
    }
}

/// Header changes of a route: removals first, then `set` (overwrite) and `add` (append), as
/// Envoy evaluates them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    /// Applies the changes to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }

    fn from_proto(ops: Option<&pb::HeaderOperations>, at: &str) -> Result<Self, InvalidView> {
        let Some(ops) = ops else {
            return Ok(Self::default());
        };
        let name = |n: &str| {
            HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| super::proto::field(at, format!("invalid header name {n:?}")))
        };
        let pair = |(n, v): (&String, &String)| {
            let value = HeaderValue::from_str(v)
                .map_err(|_| super::proto::field(at, format!("invalid value of header {n:?}")))?;
            Ok((name(n)?, value))
        };
        // Sorted: the wire's maps have no order, and a dump should not change between views.
        let mut set = ops.set.iter().map(pair).collect::<Result<Vec<_>, _>>()?;
        let mut add = ops.add.iter().map(pair).collect::<Result<Vec<_>, _>>()?;
        set.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        add.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Ok(Self {
            remove: ops
                .remove
                .iter()
                .map(|n| name(n))
                .collect::<Result<_, _>>()?,
            set,
            add,
        })
    }
}

impl Serialize for HeaderOps {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = |pairs: &[(HeaderName, HeaderValue)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| {
                    let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (n.as_str().to_owned(), value)
                })
                .collect()
        };
        #[derive(Serialize)]
        struct Shown {
            remove: Vec<String>,
            set: Vec<(String, String)>,
            add: Vec<(String, String)>,
        }
        Shown {
            remove: self.remove.iter().map(|n| n.as_str().to_owned()).collect(),
            set: text(&self.set),
            add: text(&self.add),
        }
        .serialize(s)
    }
}

fn optional_value<S: Serializer>(v: &Option<HeaderValue>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&String::from_utf8_lossy(v.as_bytes())),
        None => s.serialize_none(),
    }
}

/// One TCP route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpRoute {
    /// Ports that select it; empty: every port.
    pub ports: Vec<u16>,
    /// Destinations.
    pub destinations: Vec<Weighted>,
}

/// The first route of `routes` a request selects.
pub fn select_http<'a>(
    routes: &'a [HttpRoute],
    request: &RequestFacts<'_>,
) -> Option<&'a HttpRoute> {
    routes.iter().find(|r| r.matches(request))
}

/// A destination drawn by weight, with `unit` uniform in [0, 1).
pub fn draw(destinations: &[Weighted], unit: f64) -> Option<&Weighted> {
    let total: u64 = destinations.iter().map(|d| u64::from(d.weight)).sum();
    if total == 0 {
        return destinations.first();
    }
    let mut point = (unit * total as f64) as u64;
    for d in destinations {
        if point < u64::from(d.weight) {
            return Some(d);
        }
        point -= u64::from(d.weight);
    }
    destinations.last()
}

fn weighted(d: &pb::WeightedDestination, at: &str) -> Result<Weighted, InvalidView> {
    let port = match d.port {
        0 => None,
        p => Some(
            u16::try_from(p)
                .map_err(|_| super::proto::field(at, format!("port {p} out of range")))?,
        ),
    };
    Ok(Weighted {
        host: d.host.to_ascii_lowercase(),
        port,
        subset: (!d.subset.is_empty()).then(|| d.subset.clone()),
        weight: d.weight,
        request_headers: HeaderOps::from_proto(d.request_headers.as_ref(), at)?,
        response_headers: HeaderOps::from_proto(d.response_headers.as_ref(), at)?,
    })
}

/// A route's destinations (at least one).
fn destinations(wire: &[pb::WeightedDestination], at: &str) -> Result<Vec<Weighted>, InvalidView> {
    let destinations = wire
        .iter()
        .map(|d| weighted(d, at))
        .collect::<Result<Vec<_>, _>>()?;
    if destinations.is_empty() {
        return Err(super::proto::field(at, "a route needs a destination"));
    }
    Ok(destinations)
}

fn ms(n: u32) -> Option<Duration> {
    (n > 0).then(|| Duration::from_millis(u64::from(n)))
}

/// The HTTP routes on the wire.
pub fn http_routes(routes: &[pb::HttpRouteView], at: &str) -> Result<Vec<HttpRoute>, InvalidView> {
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("{at}.http_routes[{i}]");
            let matches = r
                .matches
                .iter()
                .map(|m| {
                    let headers = m
                        .headers
                        .iter()
                        .map(|h| {
                            let name = HeaderName::try_from(h.name.as_str()).map_err(|e| {
                                super::proto::field(&at, format!("header `{}`: {e}", h.name))
                            })?;
                            let value = h.value.as_ref().ok_or_else(|| {
                                super::proto::field(&at, "header match without value")
                            })?;
                            Ok((name, Matcher::from_proto(value, &at)?))
                        })
                        .collect::<Result<_, InvalidView>>()?;
                    Ok(HttpMatch {
                        uri: m
                            .uri
                            .as_ref()
                            .map(|u| Matcher::from_proto(u, &at))
                            .transpose()?,
                        headers,
                        method: m
                            .method
                            .as_ref()
                            .map(|u| Matcher::from_proto(u, &at))
                            .transpose()?,
                        port: u16::try_from(m.port).ok().filter(|p| *p != 0),
                        ignore_uri_case: m.ignore_uri_case,
                        scheme: m
                            .scheme
                            .as_ref()
                            .map(|u| Matcher::from_proto(u, &at))
                            .transpose()?,
                        authority: m
                            .authority
                            .as_ref()
                            .map(|u| Matcher::from_proto(u, &at))
                            .transpose()?,
                        query: m
                            .query_params
                            .iter()
                            .map(|q| {
                                let value = q.value.as_ref().ok_or_else(|| {
                                    super::proto::field(&at, "query match without value")
                                })?;
                                Ok((q.name.clone(), Matcher::from_proto(value, &at)?))
                            })
                            .collect::<Result<_, InvalidView>>()?,
                    })
                })
                .collect::<Result<_, InvalidView>>()?;
            let local = match (&r.redirect, &r.direct_response) {
                (Some(redirect), _) => Some(LocalReply::Redirect {
                    uri: (!redirect.uri.is_empty()).then(|| redirect.uri.clone()),
                    authority: (!redirect.authority.is_empty()).then(|| redirect.authority.clone()),
                    port: u16::try_from(redirect.port).ok().filter(|p| *p != 0),
                    port_from_request: redirect.port_from_request,
                    scheme: (!redirect.scheme.is_empty()).then(|| redirect.scheme.clone()),
                    code: u16::try_from(redirect.code)
                        .ok()
                        .filter(|c| (300..=399).contains(c))
                        .unwrap_or(301),
                }),
                (None, Some(direct)) => Some(LocalReply::Direct {
                    status: u16::try_from(direct.status)
                        .ok()
                        .filter(|s| (200..=599).contains(s))
                        .ok_or_else(|| {
                            super::proto::field(&at, "direct response status out of range")
                        })?,
                    body: bytes::Bytes::from(direct.body.clone()),
                }),
                (None, None) => None,
            };
            // A route that answers itself has no destination.
            let destinations = if local.is_some() {
                Vec::new()
            } else {
                destinations(&r.destinations, &at)?
            };
            Ok(HttpRoute {
                name: r.name.clone(),
                matches,
                destinations,
                timeout: ms(r.timeout_ms),
                retries: match r.retry_attempts {
                    None => Some(Retries::istio_default()),
                    Some(0) => None,
                    Some(attempts) => Some(Retries {
                        attempts: attempts.min(MAX_ATTEMPTS),
                        per_try_timeout: ms(r.per_try_timeout_ms),
                        on: RetryOn::parse(&r.retry_on),
                    }),
                },
                delay: ms(r.delay_ms).map(|d| (d, r.delay_percent.clamp(0.0, 100.0))),
                abort: u16::try_from(r.abort_status)
                    .ok()
                    .filter(|s| (200..=599).contains(s))
                    .map(|s| (s, r.abort_percent.clamp(0.0, 100.0))),
                request_headers: HeaderOps::from_proto(r.request_headers.as_ref(), &at)?,
                response_headers: HeaderOps::from_proto(r.response_headers.as_ref(), &at)?,
                rewrite_uri: (!r.rewrite_uri.is_empty()).then(|| r.rewrite_uri.clone()),
                local,
                rewrite_authority: match r.rewrite_authority.as_str() {
                    "" => None,
                    host => Some(HeaderValue::from_str(host).map_err(|_| {
                        super::proto::field(&at, format!("invalid rewrite authority {host:?}"))
                    })?),
                },
            })
        })
        .collect()
}

/// Most retries of one request, whatever a route asks (bounds the work one request causes).
const MAX_ATTEMPTS: u32 = 10;

/// The TCP routes on the wire.
pub fn tcp_routes(routes: &[pb::TcpRouteView], at: &str) -> Result<Vec<TcpRoute>, InvalidView> {
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("{at}.tcp_routes[{i}]");
            let destinations = destinations(&r.destinations, &at)?;
            Ok(TcpRoute {
                ports: r
                    .ports
                    .iter()
                    .filter_map(|p| u16::try_from(*p).ok())
                    .collect(),
                destinations,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(host: &str, weight: u32) -> Weighted {
        Weighted {
            host: host.into(),
            port: None,
            subset: None,
            weight,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
        }
    }

    #[test]
    fn weights_split_the_unit_interval() {
        let ds = [dest("a", 90), dest("b", 10)];
        assert_eq!(draw(&ds, 0.0).unwrap().host, "a");
        assert_eq!(draw(&ds, 0.899).unwrap().host, "a");
        assert_eq!(draw(&ds, 0.9).unwrap().host, "b");
        assert_eq!(draw(&ds, 0.999).unwrap().host, "b");
    }

    static NO_HEADERS: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(HeaderMap::new);

    fn facts<'a>(path: &'a str, query: Option<&'a str>) -> RequestFacts<'a> {
        RequestFacts {
            path,
            query,
            scheme: "http",
            authority: "web:8080",
            headers: &NO_HEADERS,
            method: &Method::GET,
            port: 8080,
        }
    }

    fn route(matches: &[Option<Matcher>], rewrite: &str) -> HttpRoute {
        HttpRoute {
            name: String::new(),
            matches: matches
                .iter()
                .map(|uri| HttpMatch {
                    uri: uri.clone(),
                    headers: Vec::new(),
                    method: None,
                    port: None,
                    ignore_uri_case: false,
                    scheme: None,
                    authority: None,
                    query: Vec::new(),
                })
                .collect(),
            destinations: Vec::new(),
            timeout: None,
            retries: None,
            delay: None,
            abort: None,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            rewrite_uri: Some(rewrite.to_owned()),
            rewrite_authority: None,
            local: None,
        }
    }

    #[test]
    fn rewrite_replaces_what_the_selecting_match_matched() {
        // Envoy's prefix_rewrite (what Istio's `rewrite.uri` becomes): "the matched prefix (or
        // path) should be swapped with this value"; a route without a uri match has prefix "/".
        let prefix = |p: &str| Some(Matcher::Prefix(p.into()));
        let exact = |p: &str| Some(Matcher::Exact(p.into()));
        // (matches, rewrite.uri, path, query, forwarded)
        type Case<'a> = (
            &'a [Option<Matcher>],
            &'a str,
            &'a str,
            Option<&'a str>,
            &'a str,
        );
        let cases: [Case<'_>; 6] = [
            (&[prefix("/api/")], "/v2/", "/api/items", None, "/v2/items"),
            (&[prefix("/api")], "/", "/api", Some("a=1"), "/?a=1"),
            (&[exact("/old")], "/new", "/old", Some("q"), "/new?q"),
            // The first match that holds decides the prefix.
            (&[prefix("/b/"), prefix("/a/")], "/z/", "/a/x", None, "/z/x"),
            // No uri condition: the prefix "/" is replaced (Envoy's well-known surprise).
            (&[], "/v2/", "/items", None, "/v2/items"),
            (&[None], "/v2", "/items", None, "/v2items"),
        ];
        for (matches, to, path, query, want) in cases {
            let got = route(matches, to)
                .rewrite_path(&facts(path, query))
                .unwrap();
            assert_eq!(got, want, "{path} with {to}");
        }
        let mut none = route(&[], "/x");
        none.rewrite_uri = None;
        assert_eq!(none.rewrite_path(&facts("/a", None)), None);
    }

    #[test]
    fn query_authority_and_scheme_conditions() {
        // Istio: "For a query parameter like "?key", the map key would be "key" and the string
        // match could be defined as exact: """; regexes match the whole value.
        let m = HttpMatch {
            uri: None,
            headers: Vec::new(),
            method: None,
            port: None,
            ignore_uri_case: false,
            scheme: Some(Matcher::Exact("http".into())),
            authority: Some(Matcher::Prefix("web".into())),
            query: vec![
                ("debug".into(), Matcher::Exact(String::new())),
                (
                    "v".into(),
                    Matcher::Regex(Regex::new(r"^(?:\d+)$").unwrap()),
                ),
            ],
        };
        let cases = [
            (Some("debug&v=12"), "web:8080", true),
            (Some("v=12&debug"), "web", true),
            (Some("debug=&v=7"), "web", true),
            (Some("debug&v=a12"), "web", false),
            (Some("v=12"), "web", false),
            (None, "web", false),
            (Some("debug&v=12"), "api:8080", false),
        ];
        for (query, authority, want) in cases {
            let facts = RequestFacts {
                authority,
                ..facts("/", query)
            };
            assert_eq!(m.matches(&facts), want, "{query:?} {authority}");
        }
        let https = RequestFacts {
            scheme: "https",
            ..facts("/", Some("debug&v=1"))
        };
        assert!(!m.matches(&https));
    }

    #[test]
    fn redirect_locations() {
        // Istio's HTTPRedirect: "the entire path will be replaced"; derivePort
        // FROM_PROTOCOL_DEFAULT drops the port, FROM_REQUEST_PORT keeps the request's.
        let redirect = |uri: Option<&str>,
                        authority: Option<&str>,
                        port,
                        from_request,
                        scheme: Option<&str>| {
            LocalReply::Redirect {
                uri: uri.map(str::to_owned),
                authority: authority.map(str::to_owned),
                port,
                port_from_request: from_request,
                scheme: scheme.map(str::to_owned),
                code: 301,
            }
        };
        let cases = [
            (
                redirect(Some("/new"), None, None, false, None),
                "http://web:8080/new?a=1",
            ),
            (
                redirect(Some("/new?b=2"), None, None, false, None),
                "http://web:8080/new?b=2",
            ),
            (
                redirect(None, Some("api"), None, false, None),
                "http://api/old?a=1",
            ),
            (
                redirect(None, Some("api"), None, true, None),
                "http://api:8080/old?a=1",
            ),
            (
                redirect(None, Some("api:9000"), None, false, None),
                "http://api:9000/old?a=1",
            ),
            (
                redirect(None, None, Some(8443), false, Some("https")),
                "https://web:8443/old?a=1",
            ),
        ];
        for (reply, want) in cases {
            assert_eq!(
                reply
                    .location("http", "web:8080", "/old", Some("a=1"))
                    .as_deref(),
                Some(want),
                "{reply:?}"
            );
        }
        let direct = LocalReply::Direct {
            status: 503,
            body: bytes::Bytes::new(),
        };
        assert_eq!(direct.location("http", "web", "/", None), None);
    }

    #[test]
    fn header_operations_remove_then_set_then_add() {
        // Envoy evaluates headers_to_remove before headers_to_add.
        let wire = pb::HeaderOperations {
            set: [("x-team".to_owned(), "blue".to_owned())].into(),
            add: [("x-trace".to_owned(), "added".to_owned())].into(),
            remove: vec!["x-team".into(), "x-secret".into()],
        };
        let ops = HeaderOps::from_proto(Some(&wire), "t").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-team", HeaderValue::from_static("red"));
        headers.insert("x-secret", HeaderValue::from_static("s"));
        headers.insert("x-trace", HeaderValue::from_static("client"));
        ops.apply(&mut headers);
        assert_eq!(headers.get("x-team").unwrap(), "blue");
        assert!(headers.get("x-secret").is_none());
        let traces: Vec<_> = headers.get_all("x-trace").iter().collect();
        assert_eq!(traces, ["client", "added"]);
        let bad = pb::HeaderOperations {
            remove: vec!["bad name".into()],
            ..Default::default()
        };
        assert!(HeaderOps::from_proto(Some(&bad), "t").is_err());
    }

    #[test]
    fn retry_on_conditions() {
        // Envoy: "5xx ... will retry if the upstream server responds with any 5xx response
        // code, or does not respond at all (disconnect/reset/read timeout)".
        let on = RetryOn::parse("5xx");
        assert!(on.status(500) && on.status(503) && !on.status(404));
        assert!(on.failure(true) && on.failure(false));
        let on = RetryOn::parse("gateway-error");
        assert!(on.status(502) && !on.status(500));
        // Istio's default: connect failures, refused streams and 503.
        let on = RetryOn::parse("");
        assert!(on.status(503) && !on.status(500) && on.failure(false));
    }

    #[test]
    fn regex_matches_the_whole_value() {
        let m = Matcher::from_proto(
            &pb::StringMatchView {
                kind: Some(pb::string_match_view::Kind::Regex("/v[0-9]+/.*".into())),
            },
            "t",
        )
        .unwrap();
        assert!(m.matches("/v2/items", false));
        assert!(!m.matches("/api/v2/items", false));
    }
}
