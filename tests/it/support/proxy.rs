//! A loopback TCP proxy for fault tests: forwards to a target, and on
//! command cuts every connection (refusing new ones), delays every chunk, or
//! holds every chunk (connections open, nothing moving), as a failing
//! network or a stalled server would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Default)]
struct State {
    cut: bool,
    hold: bool,
    latency: Duration,
    live: Vec<AbortHandle>,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: AbortHandle,
}

impl Proxy {
    /// Starts a proxy to `target` on an ephemeral loopback port.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.lock().unwrap().cut {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = tokio::spawn(pipe(client_read, server_write, Arc::clone(&shared)));
                let down = tokio::spawn(pipe(server_read, client_write, Arc::clone(&shared)));
                let mut state = shared.lock().unwrap();
                state.live.retain(|h| !h.is_finished());
                state.live.extend([up.abort_handle(), down.abort_handle()]);
            }
        })
        .abort_handle();
        Proxy { addr, state, accept }
    }

    /// Cuts every connection and refuses new ones (`true`), or lets them
    /// through again (`false`).
    pub fn cut(&self, on: bool) {
        let mut state = self.state.lock().unwrap();
        state.cut = on;
        if on {
            state.live.drain(..).for_each(|h| h.abort());
        }
    }

    /// Holds every chunk, both ways, until released (`false`): the
    /// connections stay open, and nothing answers.
    pub fn hold(&self, on: bool) {
        self.state.lock().unwrap().hold = on;
    }

    /// Delays every chunk by `latency`, both ways.
    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().unwrap().latency = latency;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut(true);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<Mutex<State>>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while state.lock().unwrap().hold {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let latency = state.lock().unwrap().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
