//! The warm pool's containers: started ahead per task, taken by a run,
//! refilled behind it, reaped when idle and removed at shutdown. The
//! bookkeeping without Docker is [`super::warm_pool::WarmPool`].

use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use bollard::Docker;

use super::containers::{ContainerGuard, attach_and_start};
use super::executor::{DockerExecutor, Inner};
use super::images::WorkerImage;
use super::warm_pool::WarmPool;
use crate::executor::Error;
use crate::task::registry::{ExecutorKind, TaskDef};

/// A container started ahead: attached, its worker waiting for an envelope.
pub(super) struct Warm {
    pub(super) container: ContainerGuard,
    pub(super) attached: bollard::container::AttachContainerResults,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warm").field("container", &self.container.id).finish_non_exhaustive()
    }
}

impl DockerExecutor {
    /// A warm container of `def` that still runs, if the pool has one: one
    /// that died while waiting (killed, the engine restarted) is removed
    /// rather than handed a run, which would fail for nothing and spend an
    /// attempt.
    pub(super) async fn take_live(&self, docker: &Docker, def: &'static TaskDef, image: &WorkerImage) -> Option<Warm> {
        loop {
            let (warm, stale) = self.lock_warm().take(def.title(), &image.tag);
            drop(stale);
            let warm = warm?;
            let running = docker
                .inspect_container(&warm.container.id, None)
                .await
                .ok()
                .and_then(|c| c.state)
                .and_then(|state| state.running)
                .unwrap_or(false);
            if running {
                return Some(warm);
            }
            tracing::warn!(container = %warm.container.id, task = def.title(), "taskflow docker executor: a warm container died while waiting; not using it");
            tokio::spawn(warm.container.remove());
        }
    }

    /// How many containers of `task` wait started ahead.
    pub fn warm_ready(&self, task: &str) -> usize {
        self.lock_warm().ready(task)
    }

    /// Starts the warm containers of every Docker task linked in (building
    /// their images first), so the first runs find them ready. Does nothing
    /// without a warm pool.
    ///
    /// # Errors
    /// When the engine is unreachable or an image cannot be built.
    pub async fn warm_up(&self) -> Result<(), Error> {
        if self.inner.config.warm_containers == 0 {
            return Ok(());
        }
        for def in crate::task::registry::tasks().filter(|def| def.options().executor == ExecutorKind::Docker) {
            let image = self.image_for(def).await?;
            self.refill(def, &image);
        }
        Ok(())
    }

    /// Removes every warm container (the engine is stopping).
    pub async fn remove_warm(&self) {
        let drained = self.lock_warm().drain();
        for warm in drained {
            warm.container.remove().await;
        }
    }

    pub(super) fn lock_warm(&self) -> std::sync::MutexGuard<'_, WarmPool<Warm>> {
        self.inner.warm.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts, in the background, the containers that bring `def`'s pool
    /// back to its size.
    pub(super) fn refill(&self, def: &'static TaskDef, image: &WorkerImage) {
        let missing = self.lock_warm().reserve(def.title(), &image.tag, self.inner.config.warm_containers);
        for _ in 0..missing {
            let (executor, image) = (self.clone(), image.clone());
            tokio::spawn(async move {
                match executor.start_warm(def, &image).await {
                    Ok(warm) => {
                        let unwanted = executor.lock_warm().put(def.title(), &image.tag, warm, Instant::now());
                        if let Some(unwanted) = unwanted {
                            unwanted.container.remove().await;
                        }
                    }
                    Err(error) => {
                        executor.lock_warm().give_up(def.title(), &image.tag);
                        tracing::warn!(%error, task = def.title(), "taskflow docker executor: starting a warm container failed");
                    }
                }
            });
        }
        if missing > 0 && !self.inner.reaping.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tokio::spawn(reap_idle(Arc::downgrade(&self.inner)));
        }
    }

    pub(super) async fn start_warm(&self, def: &'static TaskDef, image: &WorkerImage) -> Result<Warm, Error> {
        let docker = self.connect().await?.clone();
        let container = self.create_container(&docker, def, None, image).await?;
        let attached = attach_and_start(&docker, &container.id).await?;
        Ok(Warm { container, attached })
    }
}

/// Removes warm containers idle past the pool's limit, until the executor
/// is dropped.
pub(super) async fn reap_idle(inner: Weak<Inner>) {
    loop {
        let every = match inner.upgrade() {
            Some(inner) => (inner.config.warm_idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10)),
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else { return };
        let idle = inner.config.warm_idle;
        let reaped = inner.warm.lock().unwrap_or_else(PoisonError::into_inner).reap(idle, Instant::now());
        drop(inner);
        for warm in reaped {
            warm.container.remove().await;
        }
    }
}
