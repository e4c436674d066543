//! Worker images: what goes into the image of a task, assembled offline
//! from the app binary alone. [`BinaryInputs`] finds the binary, the shared
//! libraries and the dynamic loader it links (`ldd`) and the binary's hash;
//! [`build_context`] writes the tar the Docker engine builds from: a
//! `Dockerfile` `FROM scratch` (or the task's local base image) and a
//! `rootfs/` with the binary, the libraries, a minimal `/etc/passwd` with a
//! non-root user, and `/tmp`; [`entry_context`] the one of a task's image on
//! top of that layer, which only fixes the entry point. No registry, no base
//! image, no network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::executor::Error;
use crate::executor::child;

/// Where the binary lives in an image.
const BINARY_DIR: &str = "taskflow";

/// The user containers run as: `nobody`, present in every minimal passwd.
pub(crate) const USER: &str = "65534:65534";

/// Shared libraries (where the loader looks, the file here) and the loader.
type Linked = (Vec<(String, PathBuf)>, Option<String>);

/// What a worker image is made of.
#[derive(Debug, Clone)]
pub(crate) struct BinaryInputs {
    /// The binary on this machine.
    pub(crate) binary: PathBuf,
    /// Where its bytes are read: the binary, or `/proc/self/exe` for this
    /// very process (still the running build when a deploy replaced the file).
    pub(crate) source: PathBuf,
    /// Its file name, also its name in the image (`/taskflow/<name>`).
    pub(crate) name: String,
    /// The first 16 hex digits of the SHA-256 of the binary and the image
    /// layout: a new build of the binary gets a new tag.
    pub(crate) hash: String,
    /// Shared libraries: the path the loader looks them up at, and the file
    /// on this machine (symbolic links resolved).
    pub(crate) libraries: Vec<(String, PathBuf)>,
    /// The dynamic loader (the `PT_INTERP` path), when the binary has one.
    pub(crate) loader: Option<String>,
}

/// The version of the layout below; part of the hash so a change of layout
/// rebuilds images.
const LAYOUT: &str = "taskflow-worker-image-v3";

impl BinaryInputs {
    /// Reads `binary` (its bytes from `source`): its hash, and its libraries
    /// from `ldd`.
    pub(crate) async fn of(binary: &Path, source: &Path) -> Result<BinaryInputs, Error> {
        let assembly = |message: String| Error::Assembly { message };
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| assembly(format!("`{}` names no file", binary.display())))?;
        let path = source.to_path_buf();
        let hash = tokio::task::spawn_blocking(move || std::fs::read(&path).map(|bytes| hash(&bytes)))
            .await
            .map_err(|e| assembly(e.to_string()))?
            .map_err(|e| assembly(format!("reading `{}`: {e}", source.display())))?;
        let (libraries, loader) = linked_libraries(binary).await?;
        Ok(BinaryInputs { binary: binary.to_path_buf(), source: source.to_path_buf(), name, hash, libraries, loader })
    }
}

/// The first 16 hex digits of the SHA-256 of the layout version and `binary`.
fn hash(binary: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(LAYOUT.as_bytes());
    hasher.update(binary);
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The shared libraries and loader `binary` links, from `ldd`. A static
/// binary links none.
async fn linked_libraries(binary: &Path) -> Result<Linked, Error> {
    let mut command = child::command("ldd");
    command.arg(binary).stdin(std::process::Stdio::null());
    let output = command.output().await.map_err(|e| Error::Assembly {
        message: format!(
            "running `ldd` to find the shared libraries of the binary failed: {e}; install it (the `libc-bin` package)"
        ),
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = format!("{stdout}{stderr}");
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok((Vec::new(), None));
    }
    if !output.status.success() {
        return Err(Error::Assembly { message: format!("`ldd {}` failed: {}", binary.display(), text.trim()) });
    }
    parse_ldd(&stdout)
}

/// Parses `ldd`'s lines: `libc.so.6 => /lib/…/libc.so.6 (0x…)` for a
/// library, `/lib64/ld-linux-x86-64.so.2 (0x…)` for the loader,
/// `linux-vdso.so.1 (0x…)` for the kernel's (nothing to copy).
fn parse_ldd(stdout: &str) -> Result<Linked, Error> {
    let mut libraries = Vec::new();
    let mut loader = None;
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let without_address = match line.rfind(" (0x") {
            Some(i) => &line[..i],
            None => line,
        };
        if let Some((name, path)) = without_address.split_once(" => ") {
            let path = path.trim();
            if path == "not found" {
                return Err(Error::Assembly {
                    message: format!("the binary links `{}`, which is not installed here", name.trim()),
                });
            }
            if path.starts_with('/') {
                libraries.push((path.to_owned(), resolve(path)?));
            }
        } else if without_address.starts_with('/') {
            loader = Some(without_address.to_owned());
            libraries.push((without_address.to_owned(), resolve(without_address)?));
        }
    }
    Ok((libraries, loader))
}

fn resolve(path: &str) -> Result<PathBuf, Error> {
    std::fs::canonicalize(path).map_err(|e| Error::Assembly { message: format!("reading `{path}`: {e}") })
}

/// The entry point of task `title`'s image: the binary as `__run <title>`;
/// on a base image through the bundled loader.
pub(crate) fn entrypoint(inputs: &BinaryInputs, title: &str, on_base: bool) -> Vec<String> {
    let binary_path = format!("/{BINARY_DIR}/{}", inputs.name);
    match (&inputs.loader, on_base) {
        (Some(loader), true) => {
            let lib_dir = format!("/{BINARY_DIR}/lib");
            let loader = Path::new(loader).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            vec![
                format!("{lib_dir}/{loader}"),
                "--library-path".to_owned(),
                lib_dir,
                binary_path,
                "__run".to_owned(),
                title.to_owned(),
            ]
        }
        _ => vec![binary_path, "__run".to_owned(), title.to_owned()],
    }
}

/// The context of a task image on top of the app's layer image `from`: a
/// `Dockerfile` alone, so a task's image costs no copy of the binary.
pub(crate) fn entry_context(from: &str, entrypoint: &[String], label_line: &str) -> Result<Vec<u8>, Error> {
    let entrypoint = serde_json::to_string(entrypoint).map_err(|e| Error::Assembly { message: e.to_string() })?;
    let dockerfile = format!("FROM {from}\n{label_line}\nENTRYPOINT {entrypoint}\n");
    let mut tar = tar::Builder::new(Vec::new());
    let io = |e: std::io::Error| Error::Assembly { message: format!("writing the build context: {e}") };
    append_bytes(&mut tar, "Dockerfile", dockerfile.as_bytes(), 0o644).map_err(io)?;
    tar.into_inner().map_err(io)
}

/// The build context of an image holding the binary: a tar with the
/// `Dockerfile` and `rootfs/`. Without `base`, the app's layer image `FROM
/// scratch` (no entry point; the task images build on it); with `base`,
/// task `title`'s image on that base.
///
/// From scratch, the libraries sit where the loader looks for them. On a
/// base image they go to `/taskflow/lib` and the loader is called
/// explicitly, so the base's own files are left as they are.
pub(crate) fn build_context(
    inputs: &BinaryInputs,
    title: &str,
    base: Option<&str>,
    label_line: &str,
) -> Result<Vec<u8>, Error> {
    let binary_path = format!("/{BINARY_DIR}/{}", inputs.name);
    let mut files: BTreeMap<String, (PathBuf, u32)> = BTreeMap::new();
    for (at, source) in &inputs.libraries {
        let at = match base {
            None => at.clone(),
            Some(_) => {
                let file = Path::new(at).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                format!("/{BINARY_DIR}/lib/{file}")
            }
        };
        files.insert(at, (source.clone(), 0o755));
    }
    let entry = match base {
        None => String::new(),
        Some(_) => {
            let entrypoint = serde_json::to_string(&entrypoint(inputs, title, true))
                .map_err(|e| Error::Assembly { message: e.to_string() })?;
            format!("ENTRYPOINT {entrypoint}\n")
        }
    };
    let from = base.unwrap_or("scratch");
    let dockerfile = format!("FROM {from}\n{label_line}\nCOPY rootfs/ /\nUSER {USER}\nWORKDIR /tmp\n{entry}");

    let mut tar = tar::Builder::new(Vec::new());
    let io = |e: std::io::Error| Error::Assembly { message: format!("writing the build context: {e}") };
    append_bytes(&mut tar, "Dockerfile", dockerfile.as_bytes(), 0o644).map_err(io)?;
    if base.is_none() {
        let passwd = "root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp:/sbin/nologin\n";
        let group = "root:x:0:\nnogroup:x:65534:\n";
        append_bytes(&mut tar, "rootfs/etc/passwd", passwd.as_bytes(), 0o644).map_err(io)?;
        append_bytes(&mut tar, "rootfs/etc/group", group.as_bytes(), 0o644).map_err(io)?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o1777);
        header.set_mtime(0);
        tar.append_data(&mut header, "rootfs/tmp/", std::io::empty()).map_err(io)?;
    }
    // The bytes hashed are the bytes sent: a binary replaced on disk since
    // its hash was taken must not go out under the old tag.
    let binary = std::fs::read(&inputs.source)
        .map_err(|e| Error::Assembly { message: format!("reading `{}`: {e}", inputs.source.display()) })?;
    if hash(&binary) != inputs.hash {
        return Err(Error::Assembly {
            message: format!(
                "`{}` changed since this process read it; restart the process to build images of the new binary",
                inputs.binary.display()
            ),
        });
    }
    append_bytes(&mut tar, &format!("rootfs{binary_path}"), &binary, 0o755).map_err(io)?;
    drop(binary);
    for (at, (source, mode)) in &files {
        let bytes = std::fs::read(source)
            .map_err(|e| Error::Assembly { message: format!("reading `{}`: {e}", source.display()) })?;
        append_bytes(&mut tar, &format!("rootfs{at}"), &bytes, *mode).map_err(io)?;
    }
    tar.into_inner().map_err(io)
}

/// One `LABEL` instruction for all of `labels`, keys in order. One
/// instruction is one build step (the engine's `labels` option makes a step
/// per label); placed first, so the steps after it carry the labels.
pub(crate) fn label_line(labels: &std::collections::HashMap<String, String>) -> String {
    let mut sorted: Vec<_> = labels.iter().collect();
    sorted.sort();
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned());
    let pairs: Vec<String> = sorted.into_iter().map(|(k, v)| format!("{}={}", quote(k), quote(v))).collect();
    format!("LABEL {}", pairs.join(" "))
}

fn append_bytes(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, bytes)
}

/// A Docker repository name component for `text`: lowercase letters and
/// digits, single `_`, `.` or `-` between them, with a short hash of the
/// original when anything had to change (so `Foo` and `foo` do not share a
/// name).
pub(crate) fn name_component(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        let after_alnum = out.chars().last().is_some_and(|l: char| l.is_ascii_alphanumeric());
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if after_alnum {
            out.push(if matches!(c, '_' | '.' | '-') { c } else { '-' });
        }
    }
    let mut out = out.trim_end_matches(['_', '.', '-']).to_owned();
    if out != text {
        let digest = Sha256::digest(text.as_bytes());
        let suffix: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
        if out.is_empty() {
            out.push_str("task");
        }
        out.push('-');
        out.push_str(&suffix);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_names_libraries_and_the_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let (libraries, loader) = parse_ldd(out).unwrap();
        assert_eq!(loader.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        let at: Vec<&str> = libraries.iter().map(|(at, _)| at.as_str()).collect();
        assert_eq!(at, ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]);
        assert!(matches!(parse_ldd("\tlibfoo.so.1 => not found\n"), Err(Error::Assembly { .. })));
    }

    #[test]
    fn names_are_valid_repository_components() {
        assert_eq!(name_component("add_numbers"), "add_numbers");
        assert_eq!(name_component("crash.slow_effect"), "crash.slow_effect");
        assert!(name_component("a b").starts_with("a-b-"));
        assert_ne!(name_component("Foo"), name_component("foo"));
        assert!(name_component("...").starts_with("task-"));
    }
}
