//! A small TCP proxy for fault injection: put it between a client and a
//! server (Postgres, Redis, NATS) and make the link slow or stalled while
//! traffic flows, then heal it. Bytes are forwarded unchanged.
//!
//! * [`FaultProxy::delay`]: each chunk read, in either direction, waits
//!   this long before it is written on (latency, per round trip ×2).
//! * [`FaultProxy::stall`]: nothing is forwarded (both directions) until
//!   [`FaultProxy::heal`]; connections stay open, as a hung peer's would.
//! * [`FaultProxy::cut`]: every open connection is closed at once and new
//!   ones are refused until healed (a network partition with resets).
//!
//! It also counts [`FaultProxy::exchanges`]: the client's turns to speak.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Default)]
struct Link {
    delay_ms: AtomicU64,
    stalled: AtomicBool,
    cut: AtomicBool,
    connections: AtomicU64,
    exchanges: AtomicU64,
}

/// A running proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    pub port: u16,
    link: Arc<Link>,
    /// Bumped by `cut` so that open connections close.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port, forwarding to `target` (`host:port`).
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let link = Arc::new(Link::default());
        let (generation, _) = watch::channel(0u64);
        let gen_tx = generation.clone();
        let l = link.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if l.cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let l = l.clone();
                let target = target.clone();
                let mut cut = gen_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    l.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    // Whether the last bytes seen went client → server.
                    let client_spoke = Arc::new(AtomicBool::new(false));
                    tokio::select! {
                        () = pump(cr, sw, l.clone(), (client_spoke.clone(), true)) => {}
                        () = pump(sr, cw, l.clone(), (client_spoke, false)) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            link,
            generation,
            task,
        }
    }

    /// `127.0.0.1:port` of the proxy.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Adds `d` before each chunk is forwarded.
    pub fn delay(&self, d: Duration) {
        self.link.delay_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Holds every byte until [`FaultProxy::heal`].
    pub fn stall(&self) {
        self.link.stalled.store(true, Ordering::SeqCst);
    }

    /// Closes every open connection and refuses new ones until healed.
    pub fn cut(&self) {
        self.link.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Back to a clean link.
    pub fn heal(&self) {
        self.link.delay_ms.store(0, Ordering::SeqCst);
        self.link.stalled.store(false, Ordering::SeqCst);
        self.link.cut.store(false, Ordering::SeqCst);
    }

    /// Connections forwarded so far.
    pub fn connections(&self) -> u64 {
        self.link.connections.load(Ordering::Relaxed)
    }

    /// Exchanges so far, over every connection: each time the client sent
    /// bytes after the server had the last word (or first on its
    /// connection). A request-response protocol makes one per round trip,
    /// however its messages are cut into segments.
    pub fn exchanges(&self) -> u64 {
        self.link.exchanges.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

/// Forwards `from` to `to`. `turn`: the connection's "client spoke
/// last" flag, and whether this pump carries the client's bytes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
    turn: (Arc<AtomicBool>, bool),
) {
    let (client_spoke, from_client) = turn;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while link.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !client_spoke.swap(from_client, Ordering::SeqCst) && from_client {
            link.exchanges.fetch_add(1, Ordering::SeqCst);
        }
        let delay = link.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        while link.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
