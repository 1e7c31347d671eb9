//! Connections kept out of the pool between statements by their users
//! (the commit slots and lookups; the relay), taken from and given back to
//! the pool only when they must be.
//!
//! A pooled connection handed back costs sqlx a ping: it checks every
//! connection returned to its pool, a round trip to Postgres on a task of
//! its own, per statement. On the accept path that was one round trip in
//! three (the third, a ping on acquire, is gone from every pool:
//! `postgres::PING_IF_IDLE_FOR`).
//!
//! - At most `keep` are kept, and never more than half of the pool, so the
//!   pool always has connections for everything else (lookups, a failed
//!   group commit's requests retried one by one).
//! - One idle for [`PING_IF_IDLE_FOR`] or longer is pinged before use, as
//!   the pool does: a Postgres restart is found there, not by a request.
//! - One that met an error other than Postgres's own answer (the
//!   connection broke, the protocol failed) is dropped: sqlx's pool closes
//!   it.
//! - One kept for [`RECYCLE_AFTER`] goes back to the pool, whose
//!   `max_lifetime` and idle rules then apply to it as to any other.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};

use super::postgres::PING_IF_IDLE_FOR;

/// How long one connection is kept before it goes back to the pool.
const RECYCLE_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub(super) struct KeptConnections {
    pool: PgPool,
    idle: Mutex<Vec<Kept>>,
    keep: usize,
}

/// A connection out of the pool, for one statement (or a few in a row).
#[derive(Debug)]
pub(super) struct Kept {
    conn: PoolConnection<Postgres>,
    /// When it was taken from the pool.
    taken: Instant,
    /// When it last finished a statement.
    used: Instant,
}

impl Kept {
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl KeptConnections {
    /// Keeps up to `keep` connections of `pool` (at most half of its size).
    pub(super) fn new(pool: PgPool, keep: usize) -> Self {
        let keep = keep.min(pool.options().get_max_connections() as usize / 2);
        Self {
            pool,
            idle: Mutex::new(Vec::with_capacity(keep)),
            keep,
        }
    }

    /// A kept connection if one is idle (pinged first if it waited long),
    /// else one from the pool.
    pub(super) async fn take(&self) -> Result<Kept, sqlx::Error> {
        loop {
            let kept = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(mut kept) = kept else { break };
            if kept.used.elapsed() < PING_IF_IDLE_FOR || kept.conn.ping().await.is_ok() {
                return Ok(kept);
            }
            // Broken while it waited (Postgres restarted): closed on drop.
        }
        let now = Instant::now();
        Ok(Kept {
            conn: self.pool.acquire().await?,
            taken: now,
            used: now,
        })
    }

    /// After its statements, with the last one's outcome: kept for the
    /// next user, or back to the pool.
    pub(super) fn give_back<T>(&self, mut kept: Kept, outcome: &Result<T, sqlx::Error>) {
        // Postgres's own error ends the statement cleanly; any other
        // leaves the connection in doubt.
        let sound = matches!(outcome, Ok(_) | Err(sqlx::Error::Database(_)));
        if !sound || kept.taken.elapsed() >= RECYCLE_AFTER {
            return;
        }
        kept.used = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.keep {
            idle.push(kept);
        }
    }
}
