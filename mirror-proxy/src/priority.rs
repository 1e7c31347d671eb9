//! The tee's own threads run at a lower CPU priority than the threads that
//! serve the primary.
//!
//! The shadow requests (their own runtime, [`crate::tee`]) and the diff
//! service ([`crate::diff_service`]) already run on threads of their own,
//! but on a busy box those threads still compete for the same cores: each
//! shadow answer or diff batch that wakes one of them can preempt a proxy
//! thread in the middle of a primary request, and that wait shows in the
//! primary's tail. Raising their nice value by [`TEE_NICE`] lets the
//! scheduler settle every such contest in the primary's favour (a nice-10
//! thread weighs about a tenth of a nice-0 one and rarely preempts it on
//! wake-up), while the tee still gets the CPU an idle moment leaves: on a
//! box with spare CPU nothing changes; on a saturated one, copies wait,
//! their in-flight slots stay taken longer, and more copies are dropped
//! and counted. That is the trade the shadow phase wants (the primary is
//! never slowed; the shadow is best effort).
//!
//! On Linux the nice value belongs to each thread (`setpriority` with
//! `PRIO_PROCESS` and pid 0 changes only the calling thread), so the proxy
//! threads keep theirs. The increment is relative: a proxy started under
//! `nice -n 5` gets its tee threads at 15. Raising one's own nice value
//! needs no privilege.
//!
//! Priority inversion: the one lock the tee shares with the proxy threads
//! is the id map's mutex (the shadow task inserts a learned pair; a status
//! read looks one up), held for a map insert. A tee thread preempted
//! inside it delays a status read only until the scheduler runs it again,
//! a few milliseconds at most on a saturated core. The in-flight budget
//! is taken with a lock-free `try_acquire`, and the primary's outcome
//! goes to the shadow task over a oneshot channel (no lock).

/// How much nicer than the proxy threads the tee's threads run.
pub const TEE_NICE: i32 = 10;

/// Lowers the calling thread's priority by [`TEE_NICE`]; logs a warning if
/// the system refuses. Returns the thread's nice value after.
pub fn lower_this_thread(what: &str) -> Option<i32> {
    match rustix::process::nice(TEE_NICE) {
        Ok(now) => Some(now),
        Err(e) => {
            tracing::warn!(thread = what, error = %e, "could not lower the thread's CPU priority; it competes with the primary's threads");
            None
        }
    }
}
