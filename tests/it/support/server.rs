//! A real `simple_tasks serve` on an ephemeral port with its own data
//! directory, for the API, WebSocket and browser tests: started from the
//! built example binary, its URL and login link read from the banner,
//! stopped (SIGTERM, then kill) when dropped.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

/// A configured user of every test server.
pub const USER: (&str, &str) = ("admin", "correct-horse-battery-staple");
/// A configured API key of every test server.
pub const API_KEY: &str = "test-api-key-0123456789";

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The one-click login link the banner printed.
    pub login_link: String,
    /// The data directory.
    pub data_dir: std::path::PathBuf,
    /// Removes the data directory when the server made it.
    _dir: Option<tempfile::TempDir>,
    /// A bearer token from `simple_tasks token`.
    pub token: String,
    /// What `serve` printed up to its line about stopping.
    pub banner: String,
    /// The environment it was started with beyond the defaults (a
    /// `TASKFLOW_DATABASE_URL`, say): commands run on its store need it too.
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Starts `simple_tasks` with the test user and key, and these extra
    /// environment variables.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::start_binary(env!("CARGO_BIN_EXE_simple_tasks"), &[], env)
    }

    /// Starts `serve` of `binary` with extra arguments and environment.
    pub fn start_binary(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_in(binary, dir.path(), args, env);
        server._dir = Some(dir);
        server
    }

    /// Starts `serve` of `binary` on the data directory `data_dir` (which
    /// outlives it, for restarts).
    pub fn start_in(binary: &str, data_dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with_stderr(binary, data_dir, args, env, Stdio::inherit())
    }

    /// Starts `serve` like [`Server::start_in`], its standard error going to
    /// `stderr` (a file, to read what the server logged).
    pub fn start_with_stderr(
        binary: &str,
        data_dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: impl Into<Stdio>,
    ) -> Server {
        let mut command = Command::new(binary);
        command.arg("serve");
        if !args.contains(&"--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        command
            .args(["--grace", "2"])
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("TASKFLOW_DATA_DIR", data_dir)
            .env_remove("TASKFLOW_ADDR")
            .env_remove("TASKFLOW_DATABASE_URL")
            .env_remove("TASKFLOW_SECRET")
            .env("TASKFLOW_USERS", format!("{}:{}", USER.0, USER.1))
            .env("TASKFLOW_API_KEYS", API_KEY)
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        while !banner.contains("SIGTERM") {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("serve ended early: {banner}");
            }
            banner.push_str(&line);
        }
        let field = |prefix: &str| {
            banner
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` in the banner: {banner}"))
                .trim()
                .to_owned()
        };
        let url = field("Control plane: ");
        let login_link = field("Log in: ");
        let output = Command::new(binary)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("token")
            .env_remove("TASKFLOW_SECRET")
            .envs(env.iter().copied().filter(|(k, _)| *k == "TASKFLOW_SECRET"))
            .output()
            .unwrap();
        assert!(output.status.success(), "token: {}", String::from_utf8_lossy(&output.stderr));
        let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Server { child: Some(child), url, login_link, data_dir: data_dir.to_owned(), _dir: None, token, banner, env }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `ws://…` + `path`.
    pub fn ws(&self, path: &str) -> String {
        format!("{}{path}", self.url.replacen("http://", "ws://", 1))
    }

    /// `POST /api/v1/tasks` with `body`; the run of the 202.
    pub async fn submit(&self, body: serde_json::Value) -> serde_json::Value {
        let response = self.client().post(self.at("/api/v1/tasks")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED, "submitting {body}");
        response.json().await.unwrap()
    }

    /// `GET path` as JSON, with the bearer token.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.client().get(self.at(path)).send().await.unwrap().json().await.unwrap()
    }

    /// A client sending the bearer token.
    pub fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", self.token).parse().unwrap());
        reqwest::Client::builder().default_headers(headers).build().unwrap()
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends SIGTERM and returns the child, to watch it stop.
    pub fn terminate(mut self) -> Child {
        let child = self.child.take().unwrap();
        terminate(&child);
        child
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        terminate(&child);
        child.wait().unwrap()
    }
}

fn terminate(child: &Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls the run until it is final (at most 30 s) and returns it.
pub async fn wait_final(client: &reqwest::Client, server: &Server, task_id: &str) -> serde_json::Value {
    wait_final_within(client, server, task_id, std::time::Duration::from_secs(30)).await
}

/// [`wait_final`] with another bound: for a run that first has to build
/// something slow (a Docker run's image, which on a loaded two-core machine
/// takes longer than the usual 30 s).
pub async fn wait_final_within(
    client: &reqwest::Client,
    server: &Server,
    task_id: &str,
    within: std::time::Duration,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let run: serde_json::Value =
            client.get(server.at(&format!("/api/v1/tasks/{task_id}"))).send().await.unwrap().json().await.unwrap();
        if matches!(run["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "the run never finished: {run}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The runs of `summaries` (items of `GET /api/v1/tasks`) in full, as
/// `GET /api/v1/tasks/{task_id}` has them, in the same order.
pub async fn runs_in_full(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    summaries: &[serde_json::Value],
) -> Vec<serde_json::Value> {
    use futures_util::StreamExt;
    futures_util::stream::iter(summaries)
        .map(|summary| async move {
            let id = summary["task_id"].as_str().expect("a run summary has a task_id");
            let response = client
                .get(format!("{base}/api/v1/tasks/{id}"))
                .bearer_auth(token)
                .timeout(std::time::Duration::from_secs(60))
                .send()
                .await
                .unwrap();
            response.json().await.unwrap()
        })
        .buffered(16)
        .collect()
        .await
}
