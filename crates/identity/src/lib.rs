//! Who a workload is and how a peer checks it: SPIFFE IDs and trust domains, trust bundles with
//! several roots per domain, and X.509-SVID verifiers that plug into rustls on both sides.
