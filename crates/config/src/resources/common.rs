//! Small types several resources share: workload selectors and port keys.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// `selector: {matchLabels: …}`: the workloads a policy applies to, by label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Every label here must be present on the workload with the same value.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl WorkloadSelector {
    /// Whether `labels` carry every label of the selector. An empty selector matches everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    }

    /// The selector as `key=value,key=value`, as Istio prints it.
    pub fn describe(&self) -> String {
        let pairs: Vec<String> = self
            .match_labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        pairs.join(",")
    }
}

/// A port number written as a map key or value: YAML writes `8080:`, JSON writes `"8080":`.
///
/// It keeps the raw number so validation can say "port 70000 is out of range" instead of
/// failing inside the parser with no context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PortNumber(pub u64);

impl PortNumber {
    /// The port as `u16` when it is in 1–65535.
    pub fn valid(self) -> Option<u16> {
        u16::try_from(self.0).ok().filter(|port| *port != 0)
    }
}

impl fmt::Display for PortNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for PortNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<PortNumber, E> {
                Ok(PortNumber(value))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<PortNumber, E> {
                u64::try_from(value)
                    .map(PortNumber)
                    .map_err(|_| E::custom(format!("port {value} is negative")))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<PortNumber, E> {
                value
                    .parse()
                    .map(PortNumber)
                    .map_err(|_| E::custom(format!("`{value}` is not a port number")))
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}
