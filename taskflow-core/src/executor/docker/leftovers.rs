//! Containers an earlier process of this app left behind (a crash, a kill):
//! each container is marked with its process (`<host>/<pid>/<start>`), and
//! those of a process of this host that is gone are removed at start.

use std::collections::HashMap;

use bollard::container::{ListContainersOptions, RemoveContainerOptions};

use super::executor::DockerExecutor;
use crate::executor::Error;

impl DockerExecutor {
    /// Connects and removes the containers earlier processes of this app
    /// left behind (a crash, a kill): those of a process of this host that
    /// is gone.
    ///
    /// # Errors
    /// When the engine cannot be reached or listed.
    pub async fn remove_leftovers(&self) -> Result<usize, Error> {
        let docker = self.connect().await?;
        let app = self.app()?;
        let filters = HashMap::from([("label".to_owned(), vec![format!("taskflow.app={app}")])]);
        let options = ListContainersOptions { all: true, filters, ..Default::default() };
        let containers = docker
            .list_containers(Some(options))
            .await
            .map_err(|e| Error::Docker { doing: "listing containers".to_owned(), message: e.to_string() })?;
        let mut removed = 0;
        for container in containers {
            let labels = container.labels.unwrap_or_default();
            let Some(owner) = labels.get("taskflow.owner") else { continue };
            if owner == &self.inner.owner || !owner_is_gone(owner) {
                continue;
            }
            if let Some(id) = container.id {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                if docker.remove_container(&id, Some(options)).await.is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Whether the process that marked a container (`<host>/<pid>/<start>`) is
/// gone: a process of this host that no longer runs, or an earlier one with
/// this process's pid (a restarted container's PID 1). Containers of other
/// hosts are never touched.
pub(super) fn owner_is_gone(owner: &str) -> bool {
    let mut parts = owner.splitn(3, '/');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else { return false };
    if host != hostname() {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) if pid == std::process::id() => true,
        Ok(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => false,
    }
}

/// This process's mark, the same for all its executors:
/// `<host>/<pid>/<start ms>`.
pub(super) fn process_owner() -> &'static str {
    pub(super) static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER.get_or_init(|| format!("{}/{}/{}", hostname(), std::process::id(), crate::run::Timestamp::now().millis()))
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "local".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gone_owners_of_this_host_are_gone() {
        assert!(!owner_is_gone("another-host/1/0"));
        assert!(!owner_is_gone(&format!("{}/1/0", hostname())), "pid 1 runs");
        assert!(owner_is_gone(&format!("{}/{}/0", hostname(), std::process::id())));
        assert!(!owner_is_gone("garbage"));
    }
}
