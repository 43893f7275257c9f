//! Revocation: identities and certificates that must no longer be accepted, whatever their
//! chain says.
//!
//! A [`Revocations`] set travels with the trust bundles ([`TrustBundleSet::set_revocations`]),
//! so every verifier built on them refuses a revoked peer with no other change: an identity
//! (every certificate naming that SPIFFE ID) or one certificate by its serial number (a leaf,
//! or an intermediate and so everything below it).
//!
//! [`TrustBundleSet::set_revocations`]: crate::TrustBundleSet::set_revocations

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::id::SpiffeId;

/// A certificate serial number: the magnitude of the DER INTEGER, big-endian, without leading
/// zero octets, so that `00:9f:…` and `9F…` name the same certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// The serial of a certificate from the content octets of its DER INTEGER (what
    /// `x509-parser`'s `raw_serial` returns).
    pub fn from_der_bytes(bytes: &[u8]) -> Self {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        Self(bytes[start..].to_vec())
    }

    /// Lower-case hex, no separators (`0` for a zero serial).
    pub fn to_hex(&self) -> String {
        if self.0.is_empty() {
            return "0".to_owned();
        }
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a serial number does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("serial number {input:?} is not hexadecimal: {reason}")]
pub struct SerialError {
    input: String,
    reason: &'static str,
}

impl FromStr for Serial {
    type Err = SerialError;

    /// Hex as `openssl` prints it, in any case, with or without `0x` and `:` separators
    /// (`4A:0B:…`, `4a0b…`, `serial=4A0B…`).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| SerialError {
            input: input.to_owned(),
            reason,
        };
        let trimmed = input.trim();
        let trimmed = trimmed.strip_prefix("serial=").unwrap_or(trimmed);
        let trimmed = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        let digits: Vec<u8> = trimmed.bytes().filter(|b| *b != b':').collect();
        if digits.is_empty() {
            return Err(err("it is empty"));
        }
        if digits.len() > 80 {
            return Err(err("it is longer than 40 octets"));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(err("only 0-9, a-f and ':' are allowed")),
        };
        // An odd number of digits has an implicit leading zero.
        let mut padded = Vec::with_capacity(digits.len() + 1);
        if digits.len() % 2 == 1 {
            padded.push(b'0');
        }
        padded.extend_from_slice(&digits);
        let mut bytes = Vec::with_capacity(padded.len() / 2);
        for pair in padded.chunks(2) {
            bytes.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
        }
        Ok(Self::from_der_bytes(&bytes))
    }
}

/// Identities and certificate serials refused by every verifier that holds this set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    ids: BTreeSet<SpiffeId>,
    serials: BTreeSet<Serial>,
}

impl Revocations {
    /// An empty set: revokes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses every certificate naming `id`.
    pub fn revoke_id(&mut self, id: SpiffeId) {
        self.ids.insert(id);
    }

    /// Refuses the certificate with `serial` (and, for a CA certificate, every chain through it).
    pub fn revoke_serial(&mut self, serial: Serial) {
        self.serials.insert(serial);
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.serials.is_empty()
    }

    /// The revoked identities, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &SpiffeId> {
        self.ids.iter()
    }

    /// The revoked serials, sorted.
    pub fn serials(&self) -> impl Iterator<Item = &Serial> {
        self.serials.iter()
    }

    /// Whether `id` is revoked.
    pub fn revokes_id(&self, id: &SpiffeId) -> bool {
        self.ids.contains(id)
    }

    /// Whether the certificate with `serial` is revoked.
    pub fn revokes_serial(&self, serial: &Serial) -> bool {
        self.serials.contains(serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_parse_in_openssl_spellings() {
        let a: Serial = "4A:0B:FF".parse().unwrap();
        let b: Serial = "004a0bff".parse().unwrap();
        let c: Serial = "serial=4A0BFF".parse().unwrap();
        let d: Serial = "0x4a0bff".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
        assert_eq!(a.to_hex(), "4a0bff");
        assert_eq!(Serial::from_der_bytes(&[0, 0x4a, 0x0b, 0xff]), a);
        assert_eq!("abc".parse::<Serial>().unwrap().to_hex(), "0abc");
        assert!("".parse::<Serial>().is_err());
        assert!("xyz".parse::<Serial>().is_err());
        assert!("1".repeat(81).parse::<Serial>().is_err());
    }

    #[test]
    fn revokes_ids_and_serials() {
        let id: SpiffeId = "spiffe://cluster.local/ns/a/sa/b".parse().unwrap();
        let other: SpiffeId = "spiffe://cluster.local/ns/a/sa/c".parse().unwrap();
        let mut r = Revocations::new();
        assert!(r.is_empty());
        r.revoke_id(id.clone());
        r.revoke_serial("01".parse().unwrap());
        assert!(r.revokes_id(&id));
        assert!(!r.revokes_id(&other));
        assert!(r.revokes_serial(&Serial::from_der_bytes(&[0, 1])));
        assert!(!r.revokes_serial(&Serial::from_der_bytes(&[2])));
        assert_eq!(r.ids().count(), 1);
    }
}
