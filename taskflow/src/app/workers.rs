//! Remote workers from the command line: `worker-token create` (on the
//! server's store: a one-time provision token) and `worker` (on any
//! machine: registers once with such a token, keeps its worker token in its
//! data directory, then claims and executes runs of the server's until
//! stopped).

#[cfg(feature = "web")]
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::error::{Error, Result};
use super::{StoreArgs, open_store, runtime};

/// `worker`'s arguments.
#[derive(Debug, Args)]
pub(super) struct WorkerArgs {
    /// The control plane to work for, e.g. `http://127.0.0.1:8000`
    #[arg(long, env = "TASKFLOW_SERVER")]
    server: String,
    /// The one-time provision token from `worker-token create`; needed
    /// only to register: the worker token it buys is kept in the data
    /// directory (`worker.json`, mode 0600) for every later start
    #[arg(long, env = "TASKFLOW_PROVISION_TOKEN", hide_env_values = true)]
    provision_token: Option<String>,
    /// The executors this worker runs runs on, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "thread,process")]
    executors: Vec<crate::ExecutorKind>,
    /// How many runs this worker executes at once
    #[arg(long, env = "TASKFLOW_MAX_CONCURRENCY", default_value_t = 16)]
    max_concurrency: usize,
    /// The queues this worker takes runs from, comma-separated
    #[arg(long, value_delimiter = ',')]
    queues: Vec<String>,
    /// How long running runs may finish after a stop signal before they
    /// are handed back, in seconds
    #[arg(long, default_value_t = 30)]
    grace: u64,
}

/// A time to live as people write it: `90s`, `15m`, `1h`, `7d`.
pub(super) fn parse_ttl(text: &str) -> std::result::Result<Duration, String> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_at);
    let seconds = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && seconds > 0 => Ok(Duration::from_secs(n.saturating_mul(seconds))),
        _ => Err(format!("`{text}` is not a time to live: write a positive whole number of s, m, h or d, e.g. `1h`")),
    }
}

/// Stores a provision token for a worker called `name` and prints it.
pub(super) fn create_token(program: &str, store_args: &StoreArgs, name: &str, ttl: Duration) -> Result<()> {
    let token = runtime()?.block_on(async {
        let (store, _) = open_store(store_args).await?;
        create(&*store, name, ttl).await
    })?;
    println!("{token}");
    eprintln!(
        "a provision token for the worker `{name}`: good for one registration within {}s; it is shown only now. \
         A worker registers with it at POST /api/v1/polling/register (`{program}` serves that route).",
        ttl.as_secs()
    );
    Ok(())
}

#[cfg(feature = "web")]
async fn create(store: &dyn crate::store::Store, name: &str, ttl: Duration) -> Result<String> {
    use taskflow_web::polling::ProvisionError;
    taskflow_web::polling::create_provision_token(store, name, ttl).await.map_err(|error| match error {
        ProvisionError::Store(error) => Error::Store(error),
        other => Error::Usage(other.to_string()),
    })
}

#[cfg(not(feature = "web"))]
async fn create(_: &dyn crate::store::Store, _: &str, _: Duration) -> Result<String> {
    Err(Error::Usage(
        "this binary was built without taskflow's `web` feature, so it has no control plane for workers to register with"
            .to_owned(),
    ))
}

/// Where a worker keeps its identity.
#[cfg(feature = "web")]
fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join("worker.json")
}

/// `worker`: registers if this data directory holds no worker of `server`
/// yet, then works until Ctrl-C or SIGTERM.
#[cfg(feature = "web")]
pub(super) fn work(program: &str, store_args: &StoreArgs, args: WorkerArgs) -> Result<()> {
    use std::sync::Arc;

    use taskflow_web::polling::HttpSource;

    let runtime = runtime()?;
    runtime.block_on(async {
        let identity = identity(store_args, &args).await?;
        let source = HttpSource::new(&args.server, &identity.worker_id, &identity.worker_token);
        let stop = super::stop_signal();
        tokio::pin!(stop);
        // The server's lease, before anything is claimed: a worker trusting
        // a longer one than the server keeps would run on after the rescuer
        // gave its run to another.
        let mut wait = Duration::from_secs(1);
        let (lease, heartbeat) = loop {
            match source.config().await {
                Ok(document) => match (document["lease_ms"].as_u64(), document["heartbeat_ms"].as_u64()) {
                    (Some(lease), Some(heartbeat)) if lease > 0 && heartbeat > 0 => {
                        if let Some(bytes) = document["max_body_bytes"].as_u64() {
                            source.set_max_body_bytes(usize::try_from(bytes).unwrap_or(usize::MAX));
                        }
                        break (Duration::from_millis(lease), Duration::from_millis(heartbeat));
                    }
                    _ => {
                        return Err(Error::Usage(format!(
                            "{} sent a discovery document without its lease",
                            args.server
                        )));
                    }
                },
                Err(error) => eprintln!("{program} worker: {error}; trying again in {}s", wait.as_secs()),
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut stop => return Ok(()),
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        };
        let mut config = crate::engine::EngineConfig::default();
        config.lease = lease;
        config.heartbeat_interval = heartbeat;
        config.worker_id = identity.worker_id.clone();
        config.max_concurrency = args.max_concurrency.max(1);
        config.poll_interval = Duration::from_millis(200);
        let queues = if args.queues.is_empty() { vec!["default".to_owned()] } else { args.queues.clone() };
        config.queues = Some(queues);
        let mut refused = source.refused();
        let worker = crate::engine::RemoteWorker::start(Arc::new(source), config).map_err(Error::Engine)?;
        eprintln!(
            "worker `{}` ({}) works for {}: up to {} runs at once; Ctrl-C (or SIGTERM) stops, letting running runs \
             finish for {}s.",
            identity.name, identity.worker_id, args.server, args.max_concurrency, args.grace
        );
        let grace = tokio::select! {
            () = &mut stop => Duration::from_secs(args.grace),
            _ = refused.wait_for(|refused| *refused) => {
                // Its runs went back to the queue with the revocation.
                eprintln!(
                    "the server refuses this worker's token (revoked?): stopping; to work for it again, remove {} \
                     and start with a new --provision-token",
                    identity_path(&store_args.data_dir).display()
                );
                Duration::ZERO
            }
        };
        eprintln!("stopping: no new runs; waiting up to {}s for {} running", grace.as_secs(), worker.running_count());
        worker.shutdown(grace).await;
        Ok::<(), Error>(())
    })?;
    runtime.shutdown_background();
    Ok(())
}

#[cfg(not(feature = "web"))]
pub(super) fn work(_: &str, _: &StoreArgs, _: WorkerArgs) -> Result<()> {
    Err(Error::Usage(
        "this binary was built without taskflow's `web` feature, so it cannot work for a server".to_owned(),
    ))
}

/// Who this worker is to the server, as kept in the data directory.
#[cfg(feature = "web")]
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Identity {
    server: String,
    worker_id: String,
    name: String,
    worker_token: String,
}

/// The worker's identity for `args.server`: kept from an earlier start, or
/// got by registering with the provision token.
#[cfg(feature = "web")]
async fn identity(store_args: &StoreArgs, args: &WorkerArgs) -> Result<Identity> {
    let path = identity_path(&store_args.data_dir);
    let io = |context: String| move |source| Error::Io { context, source };
    if let Ok(text) = std::fs::read_to_string(&path) {
        let kept: Identity = serde_json::from_str(&text).map_err(|e| {
            Error::Usage(format!("{} is not a worker's identity ({e}): remove it and register again", path.display()))
        })?;
        if kept.server.trim_end_matches('/') == args.server.trim_end_matches('/') {
            return Ok(kept);
        }
    }
    let Some(provision_token) = &args.provision_token else {
        return Err(Error::Usage(format!(
            "this worker is not registered with {} (no {}): give --provision-token, from `worker-token create` on \
             the server",
            args.server,
            path.display()
        )));
    };
    let request = taskflow_web::proto::RegisterRequest {
        provision_token: provision_token.clone(),
        protocol_version: taskflow_web::proto::worker::PROTOCOL_VERSION,
        host: host_name(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        executors: args.executors.iter().map(|e| crate::wire::executor(*e)).collect(),
        tasks: crate::registry::tasks()
            .map(|def| taskflow_web::proto::TaskDigest {
                title: def.title().to_owned(),
                schema_digest: taskflow_web::polling::tokens::schema_digest(def.args_schema()),
            })
            .collect(),
        queues: args.queues.iter().map(|q| taskflow_web::proto::QueueName(q.clone())).collect(),
    };
    let registered = taskflow_web::polling::register_at(&args.server, &request).await?;
    for refused in &registered.refused {
        eprintln!("the server will not give this worker runs of `{}`: {}", refused.title, refused.reason);
    }
    let identity = Identity {
        server: args.server.clone(),
        worker_id: registered.worker_id,
        name: registered.name,
        worker_token: registered.worker_token,
    };
    std::fs::create_dir_all(&store_args.data_dir).map_err(io(format!("creating {}", store_args.data_dir.display())))?;
    let text = serde_json::to_string_pretty(&identity).expect("an identity serializes");
    write_private(&path, text.as_bytes()).map_err(io(format!("writing {}", path.display())))?;
    Ok(identity)
}

/// Writes a file only its owner may read (mode 0600 on Unix).
#[cfg(feature = "web")]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // The mode applies only to a file created here: an old one keeps its
    // own unless set.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)
}

/// This machine's name, as the kernel knows it.
#[cfg(feature = "web")]
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_to_live_read_as_people_write_them() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_ttl("30"), Ok(Duration::from_secs(30)));
        for bad in ["0h", "h", "1w", "-1h", "1.5h", ""] {
            assert!(parse_ttl(bad).unwrap_err().contains("is not a time to live"), "{bad}");
        }
    }
}
