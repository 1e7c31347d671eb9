//! Listener addresses and the readiness line.
//!
//! Pingora binds its listeners itself, when its services start, and does
//! not report the port it got. To support port 0 (tests, side-by-side
//! demos) the proxy reserves the port first: a socket with `SO_REUSEPORT`
//! is bound but never listens (so it receives no connections), and Pingora
//! binds the same port with `SO_REUSEPORT`. The reservation is held until
//! both listeners accept, so no other process can take the port in between.
//! Then the proxy prints one JSON line,
//! `{"message":"listening","proxy_addr":…,"admin_addr":…}`, on stdout.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::net::{TcpSocket, TcpStream};

use crate::state::Shared;

/// A bound, non-listening socket holding a port.
#[derive(Debug)]
pub struct Reservation {
    socket: TcpSocket,
    pub addr: SocketAddr,
}

/// Reserves a free port for a `SO_REUSEPORT` listener when `addr` has port
/// 0. A fixed port is not reserved: Pingora binds it without
/// `SO_REUSEPORT`, so a second process on the same port fails loudly
/// instead of silently sharing the traffic.
pub fn reserve(addr: SocketAddr) -> std::io::Result<Option<Reservation>> {
    if addr.port() != 0 {
        return Ok(None);
    }
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    let addr = socket.local_addr()?;
    Ok(Some(Reservation { socket, addr }))
}

/// Waits until the proxy and admin listeners accept, releases the
/// reservations and prints the readiness line.
#[derive(Debug)]
pub struct Announcer {
    shared: Arc<Shared>,
    reservations: Mutex<Vec<Reservation>>,
    proxy: SocketAddr,
    admin: SocketAddr,
}

impl Announcer {
    pub fn new(
        shared: Arc<Shared>,
        proxy: SocketAddr,
        admin: SocketAddr,
        reservations: Vec<Reservation>,
    ) -> Self {
        Self {
            shared,
            proxy,
            admin,
            reservations: Mutex::new(reservations),
        }
    }
}

async fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

#[async_trait]
impl BackgroundService for Announcer {
    async fn start(&self, _shutdown: ShutdownWatch) {
        loop {
            if self.shared.reload_ready.load(Ordering::Acquire)
                && accepts(self.proxy).await
                && accepts(self.admin).await
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for reservation in self
            .reservations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            drop(reservation.socket);
        }
        tracing::info!(
            proxy_addr = %self.proxy,
            admin_addr = %self.admin,
            "listening"
        );
    }
}
