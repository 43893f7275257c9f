//! The state directory of `meshward up`: who runs (`up.pid`), what runs (`mesh.json`, read by
//! `meshward exec`, `down` and `mtls verify`), the control plane's data and the logs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{Layout, PlannedService, PlannedWorkload};

/// What a running `meshward up` publishes about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningMesh {
    /// Process ID of `meshward up`.
    pub pid: u32,
    /// Where its addresses live.
    pub layout: Layout,
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

    /// Where `meshward up` writes a Prometheus scrape configuration for the running mesh.
    pub fn prometheus_file(&self) -> PathBuf {
        self.0.join("prometheus.yml")
    }

    /// Publishes `mesh` and its Prometheus scrape configuration (each atomically: temporary
    /// file, then rename).
    pub fn publish(&self, mesh: &RunningMesh) -> std::io::Result<()> {
        write_atomically(&self.prometheus_file(), prometheus_config(mesh).as_bytes())?;
        write_atomically(&self.mesh_file(), &serde_json::to_vec_pretty(mesh)?)
    }

    /// Removes what a stopped mesh leaves behind.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(self.mesh_file());
        let _ = std::fs::remove_file(self.prometheus_file());
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// Port of a sidecar's Prometheus endpoint (Istio's merged-metrics port).
pub const PROXY_STATS_PORT: u16 = 15090;
/// Port of the control plane's monitoring endpoint (istiod's).
pub const CONTROL_PLANE_MONITORING_PORT: u16 = 15014;

/// A Prometheus configuration that scrapes the control plane (`:15014/metrics`) and every
/// sidecar (`:15090/stats/prometheus`), with Istio's job names so that dashboards written for
/// Istio find their series; each sidecar target carries `namespace` and `workload` labels.
pub fn prometheus_config(mesh: &RunningMesh) -> String {
    let control_plane = mesh
        .control_plane
        .rsplit_once(':')
        .map_or(mesh.control_plane.as_str(), |(host, _)| host);
    let mut out = format!(
        "# Written by `meshward up`: scrape this mesh with `prometheus --config.file=<this file>`.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         scrape_configs:\n\
         - job_name: istiod\n  metrics_path: /metrics\n  static_configs:\n  \
         - targets: ['{control_plane}:{CONTROL_PLANE_MONITORING_PORT}']\n\
         - job_name: envoy-stats\n  metrics_path: /stats/prometheus\n  static_configs:\n"
    );
    for w in mesh.workloads.iter().filter(|w| w.sidecar) {
        out.push_str(&format!(
            "  - targets: ['{}:{PROXY_STATS_PORT}']\n    labels: {{namespace: '{}', workload: '{}'}}\n",
            w.address, w.namespace, w.name
        ));
    }
    out
}

/// Whether `pid` is a live `meshward` process (so a recycled PID is not mistaken for ours).
pub fn alive(pid: u32) -> bool {
    let cmdline = Path::new("/proc").join(pid.to_string()).join("cmdline");
    std::fs::read(cmdline).is_ok_and(|c| String::from_utf8_lossy(&c).contains("meshward"))
}
