//! The certificate authority: a built-in self-signed root or an Istio-style plug-in `cacerts`
//! directory, signing PKCS#10 CSRs into X.509-SVIDs for the identity the caller proved.
