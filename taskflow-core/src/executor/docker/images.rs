//! Worker images on the engine: found by tag, built on first use (the app's
//! layer image, then the task's image on it), and the app's images of other
//! binaries pruned.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::container::{ListContainersOptions, RemoveContainerOptions};
use bollard::image::{BuildImageOptions, ListImagesOptions, RemoveImageOptions};
use futures_util::StreamExt;
use tokio::sync::Mutex;

use super::contents::{self, BinaryInputs};
use super::executor::DockerExecutor;
use crate::executor::Error;
use crate::task::registry::TaskDef;

/// One image preparation at a time in this process: two first runs of a
/// task build once, the second finding the image the first built.
pub(super) static BUILDING: Mutex<()> = Mutex::const_new(());

/// A task's worker image, as the engine has it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerImage {
    /// `taskflow-<app>/<title>:<hash>`.
    pub tag: String,
    /// The engine's id of the image.
    pub id: String,
    /// The binary's hash in the tag.
    pub hash: String,
    /// Whether this call built it (`false`: it was there already).
    pub built: bool,
}

impl DockerExecutor {
    /// The image of `def`'s task for this binary: found by its tag, or built
    /// (and the app's images of other binaries removed).
    ///
    /// # Errors
    /// When the engine is unreachable, the base image is missing, or the
    /// build fails.
    pub async fn image_for(&self, def: &'static TaskDef) -> Result<WorkerImage, Error> {
        let docker = self.connect().await?;
        let program = self.program()?;
        // This process's own bytes, even after a deploy replaced the file.
        let source = match &self.inner.config.program {
            None if Path::new("/proc/self/exe").exists() => PathBuf::from("/proc/self/exe"),
            _ => program.clone(),
        };
        let inputs = self.inner.inputs.get_or_try_init(|| BinaryInputs::of(&program, &source)).await?;
        let app = self.app()?;
        let tag = format!(
            "taskflow-{}/{}:{}",
            contents::name_component(&app),
            contents::name_component(def.title()),
            inputs.hash
        );
        // Found without waiting for another task's build; looked for again
        // under the lock, which a build of this very image may have held.
        if let Ok(found) = docker.inspect_image(&tag).await {
            return Ok(WorkerImage { tag, id: found.id.unwrap_or_default(), hash: inputs.hash.clone(), built: false });
        }
        let _building = BUILDING.lock().await;
        if let Ok(found) = docker.inspect_image(&tag).await {
            return Ok(WorkerImage { tag, id: found.id.unwrap_or_default(), hash: inputs.hash.clone(), built: false });
        }
        let base = def.options().container.image;
        let title = def.title().to_owned();
        let mut labels: HashMap<String, String> = self.inner.config.labels.iter().cloned().collect();
        labels.insert("taskflow.app".to_owned(), app.clone());
        labels.insert("taskflow.task".to_owned(), def.title().to_owned());
        labels.insert("taskflow.hash".to_owned(), inputs.hash.clone());
        let id = match base {
            Some(base) => {
                if docker.inspect_image(base).await.is_err() {
                    return Err(Error::BaseImageMissing { image: base.to_owned(), title });
                }
                let inputs = inputs.clone();
                build(docker, &tag, labels, move |label_line| {
                    contents::build_context(&inputs, &title, Some(base), label_line)
                })
                .await?
            }
            None => {
                let layer = self.layer(docker, inputs, &app).await?;
                let entrypoint = contents::entrypoint(inputs, &title, false);
                build(docker, &tag, labels, move |label_line| contents::entry_context(&layer, &entrypoint, label_line))
                    .await?
            }
        };
        self.prune(docker, &app, &inputs.hash).await;
        Ok(WorkerImage { tag, id, hash: inputs.hash.clone(), built: true })
    }

    /// The app's layer image `taskflow-<app>:<hash>`: the binary, its
    /// libraries, `/etc/passwd`, `/tmp`, the user; no entry point. Each
    /// task's image adds only its entry point on top, so the binary is sent
    /// and stored once per build of it, not once per task. Called under the
    /// build lock.
    pub(super) async fn layer(&self, docker: &Docker, inputs: &BinaryInputs, app: &str) -> Result<String, Error> {
        let tag = format!("taskflow-{}:{}", contents::name_component(app), inputs.hash);
        if docker.inspect_image(&tag).await.is_ok() {
            return Ok(tag);
        }
        let mut labels: HashMap<String, String> = self.inner.config.labels.iter().cloned().collect();
        labels.insert("taskflow.app".to_owned(), app.to_owned());
        labels.insert("taskflow.hash".to_owned(), inputs.hash.clone());
        let inputs = inputs.clone();
        build(docker, &tag, labels, move |label_line| contents::build_context(&inputs, "", None, label_line)).await?;
        Ok(tag)
    }

    /// Removes the images of this app built from other binaries; an image
    /// still in use stays (best effort).
    pub(super) async fn prune(&self, docker: &Docker, app: &str, hash: &str) {
        let filters = HashMap::from([("label".to_owned(), vec![format!("taskflow.app={app}")])]);
        let options = ListImagesOptions { filters, ..Default::default() };
        let Ok(mut images) = docker.list_images(Some(options)).await else { return };
        // Task images first: a layer image with children cannot go.
        images.sort_by_key(|image| !image.labels.contains_key("taskflow.task"));
        for image in images {
            if image.labels.get("taskflow.hash").is_some_and(|h| h != hash) {
                for tag in image.repo_tags.iter().filter(|t| t.as_str() != "<none>:<none>") {
                    let _ = docker.remove_image(tag, Some(RemoveImageOptions::default()), None).await;
                }
                let _ = docker.remove_image(&image.id, Some(RemoveImageOptions::default()), None).await;
            }
        }
    }
}

/// Builds the context `make` writes (given the `LABEL` line) as `tag` with
/// `labels`; the image's id.
///
/// The engine's classic builder makes a container per step and does not
/// always remove them all, so every step container of this build is
/// removed afterwards, whatever happened: those carrying the build's own
/// label `taskflow.build=<id>` (the steps after the `LABEL` line), and the
/// `LABEL` step's, whose command names that id.
pub(super) async fn build<F>(
    docker: &Docker,
    tag: &str,
    mut labels: HashMap<String, String>,
    make: F,
) -> Result<String, Error>
where
    F: FnOnce(&str) -> Result<Vec<u8>, Error> + Send + 'static,
{
    use std::hash::{BuildHasher, Hasher};
    let build_id = format!("{:016x}", std::collections::hash_map::RandomState::new().build_hasher().finish());
    labels.insert("taskflow.build".to_owned(), build_id.clone());
    let label_line = contents::label_line(&labels);
    let context = tokio::task::spawn_blocking(move || make(&label_line))
        .await
        .map_err(|e| Error::Assembly { message: e.to_string() })??;
    let built = build_labelled(docker, tag, context).await;
    let filters = HashMap::from([("status".to_owned(), vec!["created".to_owned()])]);
    let options = ListContainersOptions { all: true, filters, ..Default::default() };
    if let Ok(containers) = docker.list_containers(Some(options)).await {
        let ours = |c: &bollard::models::ContainerSummary| {
            c.labels.as_ref().and_then(|l| l.get("taskflow.build")).is_some_and(|b| *b == build_id)
                || c.command.as_ref().is_some_and(|command| command.contains(&build_id))
        };
        for id in containers.iter().filter(|c| ours(c)).filter_map(|c| c.id.clone()) {
            let options = RemoveContainerOptions { force: true, ..Default::default() };
            let _ = docker.remove_container(&id, Some(options)).await;
        }
    }
    built
}

pub(super) async fn build_labelled(docker: &Docker, tag: &str, context: Vec<u8>) -> Result<String, Error> {
    let failed = |message: String| Error::ImageBuild { tag: tag.to_owned(), message };
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".to_owned(),
        t: tag.to_owned(),
        rm: true,
        forcerm: true,
        pull: false,
        networkmode: "none".to_owned(),
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(context.into()));
    let mut last = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(error) = info.error {
                    return Err(failed(error.trim().to_owned()));
                }
                if let Some(line) = info.stream.filter(|s| !s.trim().is_empty()) {
                    last = line.trim().to_owned();
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => return Err(failed(error)),
            Err(error) => return Err(failed(error.to_string())),
        }
    }
    let found = docker.inspect_image(tag).await.map_err(|e| failed(format!("{e} (last output: {last})")))?;
    Ok(found.id.unwrap_or_default())
}
