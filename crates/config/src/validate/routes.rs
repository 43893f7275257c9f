//! VirtualService rules (istio `pkg/config/validation`: `validateVirtualService`,
//! `validateHTTPRoute`, `validateTCPRoute`), and a clear error for each field Meshward does not
//! enforce.

use std::time::Duration;

use super::Issues;
use crate::resources::virtual_service::{
    DirectBody, DirectResponse, Fault, HeaderOperations, Headers, HttpRoute, Percent, Redirect,
    Retries, Rewrite, RouteDestination, StringMatch, TcpRoute, VirtualServiceSpec,
};

/// Envoy's retry conditions Meshward applies to HTTP/1.1 upstreams.
pub(super) const RETRY_ON: [&str; 7] = [
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "refused-stream",
    "retriable-status-codes",
    "retriable-4xx",
];

pub(super) fn virtual_service(spec: &VirtualServiceSpec, issues: &mut Issues) {
    if spec.hosts.is_empty() {
        issues.error("spec.hosts", "virtual service must have at least one host");
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        if host == "*" || host.is_empty() {
            issues.error(
                format!("spec.hosts[{i}]"),
                format!("`{host}`: a mesh route needs a service host, not a wildcard"),
            );
        }
    }
    for (i, gateway) in spec.gateways.iter().enumerate() {
        if gateway != "mesh" {
            issues.error(
                format!("spec.gateways[{i}]"),
                format!("gateway `{gateway}` is not supported: Meshward runs no gateway (use `mesh` or leave it out)"),
            );
        }
    }
    if spec.tls.is_some() {
        issues.error(
            "spec.tls",
            "`tls` routes are not supported by Meshward: use `tcp` routes by port",
        );
    }
    if spec.http.is_empty() && spec.tcp.is_empty() {
        issues.error("spec", "http or tcp must be provided in virtual service");
    }
    for (i, route) in spec.http.iter().enumerate() {
        http_route(route, &format!("spec.http[{i}]"), issues);
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        tcp_route(route, &format!("spec.tcp[{i}]"), issues);
    }
}

fn unsupported(issues: &mut Issues, base: &str, fields: &[(&str, bool)]) {
    for (field, set) in fields {
        if *set {
            issues.error(
                format!("{base}.{field}"),
                format!("`{field}` is not supported by Meshward yet"),
            );
        }
    }
}

fn http_route(route: &HttpRoute, base: &str, issues: &mut Issues) {
    unsupported(
        issues,
        base,
        &[
            ("delegate", route.delegate.is_some()),
            ("mirror", route.mirror.is_some()),
            ("mirrors", route.mirrors.is_some()),
            ("mirrorPercentage", route.mirror_percentage.is_some()),
            ("mirrorPercent", route.mirror_percent.is_some()),
            ("corsPolicy", route.cors_policy.is_some()),
        ],
    );
    if let Some(rewrite) = &route.rewrite {
        rewrite_policy(rewrite, route, &format!("{base}.rewrite"), issues);
    }
    if let Some(headers) = &route.headers {
        headers_policy(headers, &format!("{base}.headers"), issues);
    }
    for (i, m) in route.matches.iter().enumerate() {
        let at = format!("{base}.match[{i}]");
        unsupported(
            issues,
            &at,
            &[
                ("withoutHeaders", m.without_headers.is_some()),
                ("gateways", m.gateways.is_some()),
                ("statPrefix", m.stat_prefix.is_some()),
            ],
        );
        if let Some(uri) = &m.uri {
            string_match(uri, &format!("{at}.uri"), issues);
        }
        if let Some(method) = &m.method {
            string_match(method, &format!("{at}.method"), issues);
        }
        for (field, value) in [("scheme", &m.scheme), ("authority", &m.authority)] {
            if let Some(value) = value {
                string_match(value, &format!("{at}.{field}"), issues);
            }
        }
        for (name, value) in &m.query_params {
            let path = format!("{at}.queryParams.{name}");
            // Istio: "prefix matching is currently not supported" for query parameters.
            if matches!(value, StringMatch::Prefix(_)) {
                issues.error(
                    &path,
                    "prefix matching is not supported for query parameters",
                );
            }
            string_match(value, &path, issues);
        }
        if m.source_namespace.as_deref() == Some("") {
            issues.error(format!("{at}.sourceNamespace"), "must not be empty");
        }
        for (name, value) in &m.headers {
            if name.is_empty() || name.chars().any(|c| c.is_ascii_uppercase()) {
                issues.error(
                    format!("{at}.headers"),
                    format!("header name `{name}` must be lowercase"),
                );
            }
            string_match(value, &format!("{at}.headers.{name}"), issues);
        }
        if let Some(port) = m.port
            && !(1..=65535).contains(&port)
        {
            issues.error(format!("{at}.port"), format!("port {port} out of range"));
        }
    }
    // Istio's validateHTTPRoute: exactly one of route, redirect and directResponse.
    let local = route.redirect.is_some() || route.direct_response.is_some();
    if route.redirect.is_some() && route.direct_response.is_some() {
        issues.error(base, "redirect and directResponse cannot both be set");
    }
    if local && !route.route.is_empty() {
        issues.error(
            format!("{base}.route"),
            "HTTP route cannot contain both route and redirect or directResponse",
        );
    }
    if let Some(redirect) = &route.redirect {
        redirect_policy(redirect, &format!("{base}.redirect"), issues);
    }
    if let Some(direct) = &route.direct_response {
        direct_response_policy(direct, &format!("{base}.directResponse"), issues);
    }
    if !local {
        destinations(&route.route, base, issues);
    }
    if let Some(timeout) = route.timeout
        && timeout.0 < Duration::from_millis(1)
    {
        issues.error(format!("{base}.timeout"), "duration must be at least 1ms");
    }
    if let Some(retries) = &route.retries {
        retry_policy(retries, &format!("{base}.retries"), issues);
    }
    if let Some(fault) = &route.fault {
        fault_policy(fault, &format!("{base}.fault"), issues);
    }
}

/// Istio's `validateHTTPRewrite`: a rewrite must change something; Meshward's compat: no
/// regex rewrites, and no path rewrite after a regex match (whose "matched prefix" is not
/// defined).
fn rewrite_policy(rewrite: &Rewrite, route: &HttpRoute, at: &str, issues: &mut Issues) {
    if rewrite.uri_regex_rewrite.is_some() {
        issues.error(
            format!("{at}.uriRegexRewrite"),
            "`uriRegexRewrite` is not supported by Meshward yet",
        );
    }
    if rewrite.uri.is_none() && rewrite.authority.is_none() && rewrite.uri_regex_rewrite.is_none() {
        issues.error(
            at,
            "rewrite must specify URI, authority, or URI regex rewrite",
        );
    }
    if let Some(uri) = &rewrite.uri {
        if uri.is_empty() || uri.chars().any(char::is_control) {
            issues.error(
                format!("{at}.uri"),
                "must be a non-empty path without control characters",
            );
        }
        let regex_match = route
            .matches
            .iter()
            .any(|m| matches!(m.uri, Some(StringMatch::Regex(_))));
        if regex_match {
            issues.error(
                format!("{at}.uri"),
                "a path rewrite after a `regex` uri match is not supported: the matched prefix is not defined",
            );
        }
    }
    if let Some(authority) = &rewrite.authority
        && (authority.is_empty() || !header_value(authority))
    {
        issues.error(format!("{at}.authority"), "not a valid Host header value");
    }
}

/// Istio's `validateHTTPRedirect`: something to change, a 3xx code, known port policy.
fn redirect_policy(redirect: &Redirect, at: &str, issues: &mut Issues) {
    let Redirect {
        uri,
        authority,
        port,
        derive_port,
        scheme,
        redirect_code,
    } = redirect;
    if uri.is_none()
        && authority.is_none()
        && port.is_none()
        && derive_port.is_none()
        && scheme.is_none()
    {
        issues.error(at, "redirect must specify URI, authority, scheme, or port");
    }
    if let Some(code) = redirect_code
        && !matches!(code, 301 | 302 | 303 | 307 | 308)
    {
        issues.error(
            format!("{at}.redirectCode"),
            format!("{code} is not a redirect code (301, 302, 303, 307 or 308)"),
        );
    }
    if let Some(port) = port
        && !(1..=65535).contains(port)
    {
        issues.error(format!("{at}.port"), format!("port {port} out of range"));
    }
    if port.is_some() && derive_port.is_some() {
        issues.error(at, "port and derivePort cannot both be set");
    }
    if let Some(derive) = derive_port
        && !matches!(
            derive.as_str(),
            "FROM_PROTOCOL_DEFAULT" | "FROM_REQUEST_PORT"
        )
    {
        issues.error(
            format!("{at}.derivePort"),
            format!("unknown value {derive:?}"),
        );
    }
    for (field, value) in [("uri", uri), ("authority", authority), ("scheme", scheme)] {
        if let Some(value) = value
            && (value.is_empty() || !header_value(value) || value.contains(' '))
        {
            issues.error(
                format!("{at}.{field}"),
                "must be non-empty, without spaces or control characters",
            );
        }
    }
}

/// Istio's `validateHTTPDirectResponse`: a status in [200, 599], a body of at most 1 MiB.
fn direct_response_policy(direct: &DirectResponse, at: &str, issues: &mut Issues) {
    if !(200..=599).contains(&direct.status) {
        issues.error(
            format!("{at}.status"),
            format!("status {} must be in [200, 599]", direct.status),
        );
    }
    let bytes = direct.body.as_ref().map(DirectBody::to_bytes);
    let size = bytes.as_ref().map_or(0, |b| b.as_ref().map_or(0, Vec::len));
    if size > MAX_DIRECT_BODY {
        issues.error(
            format!("{at}.body"),
            format!("body of {size} bytes is over the 1 MiB limit"),
        );
    }
    if matches!(bytes, Some(None)) {
        issues.error(format!("{at}.body.bytes"), "not base64");
    }
}

/// Istio's limit on a `directResponse` body.
const MAX_DIRECT_BODY: usize = 1 << 20;

/// The `request` and `response` changes of a route's or a destination's `headers`.
fn headers_policy(headers: &Headers, at: &str, issues: &mut Issues) {
    for (ops, part) in [
        (&headers.request, "request"),
        (&headers.response, "response"),
    ] {
        if let Some(ops) = ops {
            header_operations(ops, &format!("{at}.{part}"), issues);
        }
    }
}

/// Istio's `ValidateHTTPHeaderOperationName` and `ValidateHTTPHeaderValue`: valid names, no
/// pseudo-headers, no Host (that is `rewrite.authority`), valid values.
fn header_operations(ops: &HeaderOperations, at: &str, issues: &mut Issues) {
    let names = ops
        .set
        .keys()
        .map(|n| ("set", n))
        .chain(ops.add.keys().map(|n| ("add", n)))
        .chain(ops.remove.iter().map(|n| ("remove", n)));
    for (op, name) in names {
        let path = format!("{at}.{op}");
        if name.starts_with(':') {
            issues.error(
                path,
                format!("invalid header {name:?}: pseudo-headers cannot be changed"),
            );
        } else if name.eq_ignore_ascii_case("host") {
            issues.error(
                path,
                format!("invalid header {name:?}: use rewrite.authority to change the Host"),
            );
        } else if !header_name(name) {
            issues.error(path, format!("{name:?} is not a valid header name"));
        }
    }
    for (op, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map {
            if !header_value(value) {
                issues.error(format!("{at}.{op}.{name}"), "not a valid header value");
            }
        }
    }
}

/// An HTTP header name: an RFC 9110 token.
fn header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An HTTP header value: visible characters, spaces and tabs (no CR, LF or NUL).
fn header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn tcp_route(route: &TcpRoute, base: &str, issues: &mut Issues) {
    for (i, m) in route.matches.iter().enumerate() {
        let at = format!("{base}.match[{i}]");
        unsupported(
            issues,
            &at,
            &[
                ("destinationSubnets", m.destination_subnets.is_some()),
                ("gateways", m.gateways.is_some()),
            ],
        );
        if let Some(port) = m.port
            && !(1..=65535).contains(&port)
        {
            issues.error(format!("{at}.port"), format!("port {port} out of range"));
        }
    }
    destinations(&route.route, base, issues);
}

fn string_match(m: &StringMatch, at: &str, issues: &mut Issues) {
    if let StringMatch::Regex(re) = m
        && let Err(e) = regex::Regex::new(re)
    {
        issues.error(format!("{at}.regex"), format!("invalid regex `{re}`: {e}"));
    }
}

/// Istio: "route is required"; "weight must be in [0, 100]"; "total destination weight must
/// equal 100" when there is more than one destination.
fn destinations(route: &[RouteDestination], base: &str, issues: &mut Issues) {
    if route.is_empty() {
        issues.error(format!("{base}.route"), "route is required");
    }
    for (i, d) in route.iter().enumerate() {
        let at = format!("{base}.route[{i}]");
        if d.destination.host.is_empty() {
            issues.error(
                format!("{at}.destination.host"),
                "destination host is required",
            );
        }
        if let Some(port) = d.destination.port {
            issues.port(format!("{at}.destination.port.number"), port.number);
        }
        if let Some(w) = d.weight
            && !(0..=100).contains(&w)
        {
            issues.error(
                format!("{at}.weight"),
                format!("weight {w} must be in [0, 100]"),
            );
        }
        if let Some(headers) = &d.headers {
            headers_policy(headers, &format!("{at}.headers"), issues);
        }
    }
    if route.len() > 1 {
        let total: i64 = route.iter().map(|d| d.weight.unwrap_or(0)).sum();
        if total != 100 {
            issues.error(
                format!("{base}.route"),
                format!("total destination weight {total} != 100"),
            );
        }
    }
}

fn retry_policy(retries: &Retries, at: &str, issues: &mut Issues) {
    if retries.attempts < 0 {
        issues.error(format!("{at}.attempts"), "attempts cannot be negative");
    }
    if let Some(t) = retries.per_try_timeout
        && t.0 < Duration::from_millis(1)
    {
        issues.error(
            format!("{at}.perTryTimeout"),
            "duration must be at least 1ms",
        );
    }
    if let Some(on) = &retries.retry_on {
        for condition in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let status = condition
                .parse::<u16>()
                .is_ok_and(|s| (100..600).contains(&s));
            if !status && !RETRY_ON.contains(&condition) {
                issues.error(
                    format!("{at}.retryOn"),
                    format!(
                        "retryOn `{condition}` is not supported: use status codes or {}",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
    }
    unsupported(
        issues,
        at,
        &[
            (
                "retryRemoteLocalities",
                retries.retry_remote_localities.is_some(),
            ),
            ("backoff", retries.backoff.is_some()),
        ],
    );
}

fn percent(p: Option<Percent>, at: &str, issues: &mut Issues) {
    if let Some(p) = p
        && !(0.0..=100.0).contains(&p.value)
    {
        issues.error(
            format!("{at}.percentage.value"),
            "percentage must be in [0, 100]",
        );
    }
}

fn fault_policy(fault: &Fault, at: &str, issues: &mut Issues) {
    if fault.delay.is_none() && fault.abort.is_none() {
        issues.error(at, "fault must have a delay or an abort");
    }
    if let Some(delay) = &fault.delay {
        let at = format!("{at}.delay");
        if delay.fixed_delay.is_none() {
            issues.error(format!("{at}.fixedDelay"), "fixedDelay is required");
        }
        if delay.exponential_delay.is_some() {
            issues.error(
                format!("{at}.exponentialDelay"),
                "`exponentialDelay` is not supported by Meshward",
            );
        }
        percent(delay.percentage, &at, issues);
        if let Some(p) = delay.percent
            && !(0..=100).contains(&p)
        {
            issues.error(format!("{at}.percent"), "percent must be in [0, 100]");
        }
    }
    if let Some(abort) = &fault.abort {
        let at = format!("{at}.abort");
        match abort.http_status {
            Some(status) if (200..=599).contains(&status) => {}
            Some(status) => issues.error(
                format!("{at}.httpStatus"),
                format!("invalid http status {status}"),
            ),
            None => issues.error(
                format!("{at}.httpStatus"),
                "httpStatus is required (grpcStatus and http2Error are not supported)",
            ),
        }
        percent(abort.percentage, &at, issues);
        unsupported(
            issues,
            &at,
            &[
                ("grpcStatus", abort.grpc_status.is_some()),
                ("http2Error", abort.http2_error.is_some()),
            ],
        );
    }
}
