//! Group commit: concurrent acceptances share one statement and one commit.
//!
//! At most `concurrency` commits are in flight at once. A request that
//! finds a commit slot free and nobody queued commits alone, at once, on its
//! own task: no hand-off to another task, no wake-up. Otherwise it is
//! queued to one committer task, which starts a commit as soon as a slot is
//! free, taking everything queued at that moment (up to `max_requests`
//! requests and `max_messages` message rows): a busy service amortises the
//! round trip, the statement and the commit record over many requests.
//! Nothing waits for a batch to fill.
//!
//! Commits run on connections kept out of the pool between statements
//! ([`KeptConnections`], shared with lookups): a commit is one round trip
//! to Postgres.
//!
//! Each request is answered only after the commit that holds its rows
//! returned, so a `202` still means durable. Within a commit:
//!
//! * two requests with the same Idempotency-Key never share a statement
//!   (one `INSERT … ON CONFLICT` cannot touch a row twice, and both would
//!   see the one row the key produced): the second waits for the next
//!   commit, where it finds the first's key committed and is replayed;
//! * keys are inserted in a fixed order, so two commits cannot deadlock on
//!   each other's keys;
//! * when the statement fails (a key held by another transaction past
//!   `lock_timeout`, a deadlock, any error Postgres reports), nothing of it
//!   was written, and every request is retried alone, so one request's
//!   trouble is never another's. An error that is not Postgres's answer to
//!   the statement (the connection dropped, a `FATAL` ending the session)
//!   may hide a commit: it is returned to every request, as it would be
//!   without batching, never retried.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::kept::{KeptConnections, ends_session};
use super::postgres::PgStore;
use super::{AcceptOutcome, Acceptance, StoreError};

/// Limits of one commit.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    /// Most requests in one commit; 1 turns batching off.
    pub max_requests: usize,
    /// Most message rows in one commit (a bulk request is never split; one
    /// larger than this is committed alone).
    pub max_messages: usize,
    /// Commits in flight at once.
    pub concurrency: usize,
    /// Observes the requests of each commit (`orchestrator_db_commit_requests`).
    pub sizes: Option<prometheus::Histogram>,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_requests: 64,
            max_messages: 1000,
            concurrency: 2,
            sizes: None,
        }
    }
}

struct Job {
    acceptance: Arc<Acceptance>,
    reply: oneshot::Sender<Result<AcceptOutcome, StoreError>>,
}

/// The queue in front of the committer task. The task ends when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
    /// One permit per commit in flight, shared by the fast path and the
    /// committer task.
    slots: Arc<Semaphore>,
    /// The store without a committer: commits directly.
    direct: Arc<PgStore>,
    /// The slots' connections.
    connections: Arc<KeptConnections>,
    sizes: Option<prometheus::Histogram>,
}

impl Committer {
    /// `store` must be one without a committer (it commits directly).
    pub(super) fn start(store: PgStore, limits: GroupCommit) -> Self {
        let (jobs, queue) = mpsc::channel(4096);
        let slots = Arc::new(Semaphore::new(limits.concurrency.max(1)));
        let connections = store.kept().clone();
        let sizes = limits.sizes.clone();
        tokio::spawn(run(
            store.clone(),
            queue,
            slots.clone(),
            connections.clone(),
            limits,
        ));
        Self {
            jobs,
            slots,
            direct: Arc::new(store),
            connections,
            sizes,
        }
    }

    pub(super) async fn accept(
        &self,
        acceptance: Arc<Acceptance>,
    ) -> Result<AcceptOutcome, StoreError> {
        // The fast path: nobody queued (so nobody overtaken) and a slot free.
        // A slot released while the committer task waits for one goes to
        // the task (the semaphore serves waiters first); jobs it deferred
        // are not in the channel, and one of them may wait for the next
        // free slot behind this request, as it would behind any commit.
        if self.jobs.capacity() == self.jobs.max_capacity()
            && let Ok(_slot) = self.slots.try_acquire()
        {
            if let Some(sizes) = &self.sizes {
                sizes.observe(1.0);
            }
            let written = self
                .connections
                .run(async |c| self.direct.write(c, &[&acceptance]).await)
                .await;
            return self.direct.outcome_alone(&acceptance, written).await;
        }
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Other(anyhow::anyhow!("the committer task has stopped"));
        self.jobs
            .send(Job { acceptance, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    store: PgStore,
    mut queue: mpsc::Receiver<Job>,
    slots: Arc<Semaphore>,
    connections: Arc<KeptConnections>,
    limits: GroupCommit,
) {
    let hasher = RandomState::new();
    // Jobs taken from the queue but left for a later commit, oldest first.
    let mut deferred: VecDeque<Job> = VecDeque::new();
    loop {
        // A job first, then a slot: an idle committer holds no slot, so the
        // fast path finds every slot free.
        let first = match deferred.pop_front() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut messages = first.acceptance.messages.len();
        // Hashes of the batch's keys: a collision only defers a request.
        let mut keys: Vec<u64> = key_hash(&hasher, &first).into_iter().collect();
        let mut batch = vec![first];
        let mut later = Vec::new();
        while batch.len() < limits.max_requests.max(1) {
            let Some(job) = deferred.pop_front().or_else(|| queue.try_recv().ok()) else {
                break;
            };
            if messages + job.acceptance.messages.len() > limits.max_messages {
                later.push(job);
                break;
            }
            if let Some(hash) = key_hash(&hasher, &job) {
                if keys.contains(&hash) {
                    later.push(job);
                    continue;
                }
                keys.push(hash);
            }
            messages += job.acceptance.messages.len();
            batch.push(job);
        }
        for job in later.into_iter().rev() {
            deferred.push_front(job);
        }
        if let Some(sizes) = &limits.sizes {
            sizes.observe(batch.len() as f64);
        }
        let store = store.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            commit(&store, &connections, batch).await;
            drop(slot);
        });
    }
}

fn key_hash(hasher: &RandomState, job: &Job) -> Option<u64> {
    let idem = job.acceptance.idempotency.as_ref()?;
    Some(hasher.hash_one((&idem.tenant, &idem.scope, &idem.key)))
}

async fn commit(store: &PgStore, connections: &KeptConnections, mut batch: Vec<Job>) {
    if batch.len() == 1 {
        let job = batch.remove(0);
        let written = connections
            .run(async |c| store.write(c, &[&job.acceptance]).await)
            .await;
        let outcome = store.outcome_alone(&job.acceptance, written).await;
        let _ = job.reply.send(outcome);
        return;
    }
    // A fixed order of key inserts: commits cannot deadlock on keys.
    fn key(job: &Job) -> Option<(&str, &str, &str)> {
        let i = job.acceptance.idempotency.as_ref()?;
        Some((&i.tenant, &i.scope, &i.key))
    }
    batch.sort_by(|a, b| key(a).cmp(&key(b)));
    let acceptances: Vec<&Acceptance> = batch.iter().map(|j| j.acceptance.as_ref()).collect();
    let written = connections
        .run(async |c| store.write(c, &acceptances).await)
        .await;
    drop(acceptances);
    match written {
        Ok(taken) => {
            for (index, job) in batch.into_iter().enumerate() {
                let outcome = if i32::try_from(index).is_ok_and(|i| taken.contains(&i)) {
                    Ok(AcceptOutcome::Accepted)
                } else {
                    store.not_taken(&job.acceptance).await
                };
                let _ = job.reply.send(outcome);
            }
        }
        // Postgres refused the statement: nothing was written. Alone, each
        // request meets only its own trouble. (A `FATAL` ends the session
        // and may come after the commit: like a dropped connection, below.)
        Err(sqlx::Error::Database(e)) if !ends_session(e.as_ref()) => {
            tracing::debug!(
                requests = batch.len(),
                code = e.code().as_deref().unwrap_or(""),
                "group commit refused; committing its requests one by one"
            );
            futures::future::join_all(batch.into_iter().map(|job| async move {
                let outcome = store.accept_alone(&job.acceptance).await;
                let _ = job.reply.send(outcome);
            }))
            .await;
        }
        Err(e) => {
            let e = StoreError::from(e);
            for job in batch {
                let _ = job.reply.send(Err(e.share()));
            }
        }
    }
}
