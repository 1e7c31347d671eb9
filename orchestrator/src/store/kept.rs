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
//! - At most `keep` are kept, and never more than `(size − 1) / 2` of the
//!   pool (none in a pool of 2), so the pool always has connections for
//!   everything else: the relay's `LISTEN` connection, which holds one for
//!   good, lookups of their own, a failed group commit's requests retried
//!   one by one, the readiness probe.
//! - One idle for [`PING_IF_IDLE_FOR`] or longer is pinged before use, as
//!   the pool does (a Postgres restart is found there, not by a request);
//!   a ping that gets no answer within [`PING_TIMEOUT`] (a stalled link)
//!   drops it.
//! - One whose last statement ended in anything but Postgres's own
//!   non-fatal answer (an I/O or protocol error, a `FATAL` such as
//!   `57P01` when the server shuts down) is not kept: it goes back to the
//!   pool, whose release check closes it.
//! - One kept for [`RECYCLE_AFTER`] goes back to the pool when next given
//!   back; the pool's `max_lifetime` and idle rules then apply to it as to
//!   any other.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgDatabaseError, PgSeverity};
use sqlx::{Connection, PgConnection, PgPool, Postgres};

use super::postgres::PING_IF_IDLE_FOR;

/// How long one connection is kept before it goes back to the pool.
const RECYCLE_AFTER: Duration = Duration::from_secs(300);

/// How long the ping of a connection that waited may take: the pool's own
/// acquire timeout.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a statement that ended with `outcome` leaves its connection fit
/// for the next: it succeeded, or Postgres answered with an error that
/// ends only the statement (not a `FATAL` or `PANIC`, which end the
/// session).
fn leaves_connection_sound<T>(outcome: &Result<T, sqlx::Error>) -> bool {
    match outcome {
        Ok(_) => true,
        Err(sqlx::Error::Database(e)) => !ends_session(e.as_ref()),
        Err(_) => false,
    }
}

/// A `FATAL` or `PANIC` from Postgres: the server ends the session.
pub(super) fn ends_session(e: &dyn sqlx::error::DatabaseError) -> bool {
    e.try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic))
}

#[derive(Debug)]
pub(super) struct KeptConnections {
    pool: PgPool,
    idle: Mutex<Vec<Kept>>,
    keep: usize,
}

/// A connection out of the pool, for one statement.
#[derive(Debug)]
struct Kept {
    conn: PoolConnection<Postgres>,
    /// When it was taken from the pool.
    taken: Instant,
    /// When it last finished a statement.
    used: Instant,
}

impl KeptConnections {
    /// Keeps up to `keep` connections of `pool` (at most `(size − 1) / 2`).
    pub(super) fn new(pool: PgPool, keep: usize) -> Self {
        let size = pool.options().get_max_connections() as usize;
        let keep = keep.min(size.saturating_sub(1) / 2);
        Self {
            pool,
            idle: Mutex::new(Vec::with_capacity(keep)),
            keep,
        }
    }

    /// Runs `statement` on a kept connection (or one from the pool), then
    /// keeps it or hands it back according to the outcome. An error taking
    /// a connection is returned as the statement's.
    pub(super) async fn run<T>(
        &self,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut kept = self.take().await?;
        let outcome = statement(&mut kept.conn).await;
        self.give_back(kept, &outcome);
        outcome
    }

    /// A kept connection if one is idle (pinged first if it waited long),
    /// else one from the pool.
    async fn take(&self) -> Result<Kept, sqlx::Error> {
        loop {
            let kept = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(mut kept) = kept else { break };
            if kept.used.elapsed() < PING_IF_IDLE_FOR
                || matches!(
                    tokio::time::timeout(PING_TIMEOUT, kept.conn.ping()).await,
                    Ok(Ok(()))
                )
            {
                return Ok(kept);
            }
            // Broken or silent while it waited (Postgres restarted, the
            // link stalled): back to the pool, whose check closes it.
        }
        let now = Instant::now();
        Ok(Kept {
            conn: self.pool.acquire().await?,
            taken: now,
            used: now,
        })
    }

    /// After its statement, with the outcome: kept for the next user, or
    /// back to the pool.
    fn give_back<T>(&self, mut kept: Kept, outcome: &Result<T, sqlx::Error>) {
        if !leaves_connection_sound(outcome) || kept.taken.elapsed() >= RECYCLE_AFTER {
            return;
        }
        kept.used = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.keep {
            idle.push(kept);
        }
    }
}
