//! The state directory of `meshward up`: who runs (`up.pid`), what runs (`mesh.json`, read by
//! `meshward exec`, `down` and `mtls verify`), the control plane's data and the logs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{PlannedService, PlannedWorkload, Subnet};

/// What a running `meshward up` publishes about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningMesh {
    /// Process ID of `meshward up`.
    pub pid: u32,
    /// The subnet.
    pub subnet: Subnet,
    /// The control plane's gRPC address.
    pub control_plane: String,
    /// The workloads.
    pub workloads: Vec<PlannedWorkload>,
    /// The services.
    pub services: Vec<PlannedService>,
}

/// Paths inside the state directory.
#[derive(Debug, Clone)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    /// `$MESHWARD_STATE_DIR`, else `$MESHWARD_HOME/up`, else `$HOME/.meshward/up`.
    pub fn default_location() -> Self {
        if let Some(dir) = std::env::var_os("MESHWARD_STATE_DIR") {
            return Self(PathBuf::from(dir));
        }
        let home = std::env::var_os("MESHWARD_HOME").map_or_else(
            || {
                std::env::var_os("HOME")
                    .map_or_else(|| PathBuf::from("."), PathBuf::from)
                    .join(".meshward")
            },
            PathBuf::from,
        );
        Self(home.join("up"))
    }

    /// The control plane's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.0.join("data")
    }

    /// Where children's logs go.
    pub fn log_dir(&self) -> PathBuf {
        self.0.join("logs")
    }

    fn mesh_file(&self) -> PathBuf {
        self.0.join("mesh.json")
    }

    /// The running mesh, if one is running: its file exists and its process is alive.
    pub fn running(&self) -> Option<RunningMesh> {
        let bytes = std::fs::read(self.mesh_file()).ok()?;
        let mesh: RunningMesh = serde_json::from_slice(&bytes).ok()?;
        alive(mesh.pid).then_some(mesh)
    }

    /// Publishes `mesh` (atomically: temporary file, then rename).
    pub fn publish(&self, mesh: &RunningMesh) -> std::io::Result<()> {
        let tmp = self.0.join(".mesh.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(mesh)?)?;
        std::fs::rename(tmp, self.mesh_file())
    }

    /// Removes what a stopped mesh leaves behind.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(self.mesh_file());
    }
}

/// Whether `pid` is a live `meshward` process (so a recycled PID is not mistaken for ours).
pub fn alive(pid: u32) -> bool {
    let cmdline = Path::new("/proc").join(pid.to_string()).join("cmdline");
    std::fs::read(cmdline).is_ok_and(|c| String::from_utf8_lossy(&c).contains("meshward"))
}
