//! The CA watchdog: the control plane is not ready while its CA needs attention — a signing
//! certificate with less than a fifth of its lifetime left, or CA files changed on disk that
//! could not be loaded — and metrics say which, so an alert fires before certificates stop
//! being issued (the "expiry doomsday" of linkerd#4808, the silently missed reload of
//! linkerd#15109).
//!
//! Metrics on port 15014:
//!
//! - `meshward_ca_not_ready{reason}`: 1 while `reason` holds, else 0; `reason` is
//!   `signing_certificate_expiring` or `ca_files_not_loaded`;
//! - `meshward_ca_signing_certificate_expiry_timestamp`: when the signing certificate expires
//!   (Unix seconds);
//! - `meshward_ca_rotation_stage`: the stage of a root rotation in progress (1–4), 0 when none;
//! - `meshward_ca_revocations`: the revocations in force.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use meshward_ca::Authority;

use crate::Shared;

/// How often the watchdog looks, besides on every trust change.
const EVERY: Duration = Duration::from_secs(5);

/// Label `reason` of `meshward_ca_not_ready`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: &'static str,
}

/// Why the CA makes the control plane not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotReady {
    /// Less than 20 % of the signing certificate's lifetime is left.
    SigningCertificateExpiring(String),
    /// The CA files on disk changed and could not be loaded.
    CaFilesNotLoaded(String),
}

impl NotReady {
    fn label(&self) -> &'static str {
        match self {
            Self::SigningCertificateExpiring(_) => "signing_certificate_expiring",
            Self::CaFilesNotLoaded(_) => "ca_files_not_loaded",
        }
    }
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SigningCertificateExpiring(m) | Self::CaFilesNotLoaded(m) => f.write_str(m),
        }
    }
}

/// Whether a certificate valid from `start` to `end` (Unix seconds) has less than a fifth of
/// its lifetime left at `now`.
pub(crate) fn expiring(start: i64, end: i64, now: i64) -> bool {
    let life = (end - start).max(1);
    (end - now).saturating_mul(5) < life
}

/// Every reason the CA makes the control plane not ready now.
pub(crate) fn reasons(shared: &Shared) -> Vec<NotReady> {
    let now = meshward_ca::rotation::now_ms() / 1000;
    reasons_for(&shared.ca.current(), shared.ca.load_error(), now)
}

/// Every reason a CA signing with `authority`, whose files could not be loaded for
/// `load_error`, makes the control plane not ready at `now` (Unix seconds).
fn reasons_for(authority: &Authority, load_error: Option<String>, now: i64) -> Vec<NotReady> {
    let mut reasons = Vec::new();
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(authority.signing_cert().as_ref()) {
        let validity = cert.validity();
        if expiring(
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
            now,
        ) {
            reasons.push(NotReady::SigningCertificateExpiring(format!(
                "signing certificate `{}` expires at {} with less than 20% of its lifetime left: \
                 plug in a new intermediate or rotate (`meshward ca rotate`)",
                cert.subject(),
                validity.not_after
            )));
        }
    }
    if let Some(error) = load_error {
        reasons.push(NotReady::CaFilesNotLoaded(format!(
            "the CA files changed on disk but cannot be loaded (the previous CA keeps signing): {error}"
        )));
    }
    reasons
}

/// The watchdog's metrics.
#[derive(Debug, Default)]
pub(crate) struct Watchdog {
    not_ready: Family<ReasonLabel, Gauge>,
    signing_expiry: Gauge,
    rotation_stage: Gauge,
    revocations: Gauge,
}

impl Watchdog {
    /// Registers every metric into `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "meshward_ca_not_ready",
            "1 while the CA makes the control plane not ready, by reason",
            self.not_ready.clone(),
        );
        registry.register(
            "meshward_ca_signing_certificate_expiry_timestamp",
            "When the certificate that signs workload certificates expires (Unix seconds)",
            self.signing_expiry.clone(),
        );
        registry.register(
            "meshward_ca_rotation_stage",
            "Stage of the root rotation in progress (1-4), 0 when none",
            self.rotation_stage.clone(),
        );
        registry.register(
            "meshward_ca_revocations",
            "Identities and certificates revoked",
            self.revocations.clone(),
        );
    }

    fn update(&self, shared: &Shared) {
        let reasons = reasons(shared);
        for label in ["signing_certificate_expiring", "ca_files_not_loaded"] {
            let on = reasons.iter().any(|r| r.label() == label);
            self.not_ready
                .get_or_create(&ReasonLabel { reason: label })
                .set(i64::from(on));
        }
        let authority = shared.ca.current();
        self.signing_expiry
            .set(authority.signing_not_after().unix_timestamp());
        if let Some(expiry) = authority.root().and_then(|r| crate::not_after(r)) {
            shared.metrics.root_cert_expiry_timestamp.set(expiry);
        }
        self.rotation_stage.set(
            shared
                .ca
                .rotation()
                .filter(|s| !s.phase.is_terminal())
                .and_then(|s| s.phase.stage())
                .map_or(0, i64::from),
        );
        self.revocations.set(
            shared
                .ca
                .with_revocations(|l| i64::try_from(l.entries().len()).unwrap_or(i64::MAX)),
        );
    }
}

/// Keeps the watchdog's metrics current until the control plane stops.
pub(crate) async fn run(shared: Arc<Shared>, watchdog: Arc<Watchdog>) {
    let mut changes = shared.ca.subscribe();
    loop {
        watchdog.update(&shared);
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use meshward_ca::{Authority, InitOptions};
    use meshward_identity::TrustDomain;

    use super::{NotReady, expiring, reasons_for};

    #[test]
    fn expiring_means_less_than_a_fifth_of_the_lifetime_left() {
        assert!(!expiring(0, 100, 0));
        assert!(!expiring(0, 100, 80));
        assert!(expiring(0, 100, 81));
        assert!(expiring(0, 100, 150));
    }

    #[test]
    fn a_signing_certificate_near_its_end_or_unloadable_files_make_it_not_ready() {
        let tmp = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("cluster.local").unwrap();
        let ca = Authority::init(
            &tmp.path().join("ca"),
            &InitOptions::new(td).with_intermediate(),
        )
        .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(ca.signing_cert().as_ref()).unwrap();
        let (start, end) = (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        );
        assert!(reasons_for(&ca, None, start + 1).is_empty());
        let late = end - (end - start) / 10;
        let reasons = reasons_for(&ca, None, late);
        assert!(
            matches!(reasons.as_slice(), [NotReady::SigningCertificateExpiring(m)] if m.contains("20%")),
            "{reasons:?}"
        );
        let reasons = reasons_for(&ca, Some("ca-key.pem: bad".to_owned()), start + 1);
        assert!(
            matches!(reasons.as_slice(), [NotReady::CaFilesNotLoaded(m)] if m.contains("ca-key.pem")),
            "{reasons:?}"
        );
    }
}
