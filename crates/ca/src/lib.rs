//! The certificate authority: a built-in self-signed root or an Istio-style plug-in `cacerts`
//! directory, signing PKCS#10 CSRs into X.509-SVIDs for the identity the caller proved.
//!
//! Both kinds live on disk in Istio's `cacerts` layout (`ca-cert.pem`, `ca-key.pem`,
//! `root-cert.pem`, `cert-chain.pem`), so one loader with one set of checks serves both:
//! [`Authority::load_or_init`] for the control plane, [`Authority::init`] and
//! [`Authority::adopt`] for `meshward ca init`. [`Authority::sign`] issues SVIDs.
//! [`rotation`] replaces the root in stages without a moment of disagreement.

mod authority;
mod cert;
mod files;
mod init;
mod load;
pub mod rotation;
mod sign;

pub use authority::{Authority, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT, CaError};
pub use cert::{fingerprint_sha256, spki_sha256, to_pem};
pub use files::{FilesError, MAX_FILE_BYTES, read_bounded};
pub use init::InitOptions;
pub use load::LoadError;
pub use sign::{IssuedSvid, MAX_CSR_BYTES, SignError, SigningPolicy};
