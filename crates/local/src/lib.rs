//! Running a mesh on one machine: the built-in demo apps that examples use so that nothing
//! else needs installing, and (in `meshward up`) the supervisor of control plane, workloads
//! and sidecars.

pub mod apps;
