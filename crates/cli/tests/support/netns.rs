//! Network namespaces for tests that need real separate hosts (`meshward_local::netns`: unique
//! `mw-<pid>-…` names, deleted on drop even when the test fails), and whether they can run.

use std::path::Path;

/// Whether namespace tests can run here: root, with `ip` and the iptables tools. Prints why
/// not (the test then passes as skipped). Removes what killed runs left behind.
pub fn can_run(test: &str) -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid() == 0
    });
    if !root {
        eprintln!("skipping {test}: network namespaces and iptables need root");
        return false;
    }
    for tool in ["ip", "iptables-save", "iptables-restore", "curl"] {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| Path::new(&dir).join(tool).is_file())
        });
        if !found {
            eprintln!(
                "skipping {test}: `{tool}` is not installed (Debian: iproute2, iptables, curl)"
            );
            return false;
        }
    }
    meshward_local::netns::reap(None);
    // Root without the capabilities (a container without CAP_SYS_ADMIN) cannot either.
    let probe = meshward_local::netns::owned_name("probe");
    if let Err(err) = meshward_local::netns::Netns::create(&probe) {
        eprintln!("skipping {test}: cannot create network namespaces here: {err}");
        return false;
    }
    true
}
