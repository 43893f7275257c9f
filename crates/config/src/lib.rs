//! Istio-compatible configuration: multi-document YAML/JSON parsing with file:line:column
//! diagnostics, validation with Istio's rules, and the effective policy for one workload and
//! port, computed by pure functions.
