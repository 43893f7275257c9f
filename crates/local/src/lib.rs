//! Running a whole mesh on one machine (`meshward up`): the plan of addresses, the embedded
//! control plane, every workload's app and sidecar under supervision, the services' virtual
//! addresses, live probes and the report — plus the built-in demo apps examples use so that
//! nothing else needs installing.

pub mod apps;
pub mod kube_proxy;
pub mod netns;
pub mod plan;
pub mod probe;
pub mod report;
pub mod state;
pub mod supervisor;
pub mod up;

pub use plan::{Layout, Plan, Subnet, plan, plan_in};
pub use state::{RunningMesh, StateDir};
pub use up::{UpError, UpOptions};
