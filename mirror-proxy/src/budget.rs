//! The shadow's in-flight budget: one for the life of the process.
//!
//! A reload swaps the compiled settings ([`crate::state::Live`]) whole, but
//! copies started under the old settings are still running (a stalled
//! shadow holds them until its timeout). A semaphore built per reload would
//! let each generation fill its own `max_in_flight`, so a stalled shadow
//! plus a few reloads would hold several budgets at once. The budget lives
//! in [`crate::state::Shared`] instead, and a reload only resizes it:
//! growing adds slots at once; shrinking takes free slots at once and the
//! rest as the copies holding them finish (a queued `acquire_many` gets
//! released slots before any `try_acquire` does, so no new copy starts
//! until the budget is back under the new size).

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct InFlightBudget {
    slots: Arc<Semaphore>,
    /// The size last asked for; a std lock, held only to compare and adjust.
    size: Mutex<usize>,
}

impl InFlightBudget {
    pub fn new(size: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(size)),
            size: Mutex::new(size),
        }
    }

    /// A slot, or `None` when every slot is taken (the copy is dropped,
    /// never queued).
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// The size the budget has (or is shrinking to).
    pub fn size(&self) -> usize {
        *self.size.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a new size. Shrinking below the slots in use needs a tokio
    /// runtime: a task takes the remaining slots as they are released.
    pub fn resize(&self, size: usize) {
        let mut current = self.size.lock().unwrap_or_else(|p| p.into_inner());
        if size > *current {
            self.slots.add_permits(size - *current);
        } else if size < *current {
            let excess = *current - size;
            let owed = excess - self.slots.forget_permits(excess);
            if owed > 0 {
                let slots = self.slots.clone();
                let owed = u32::try_from(owed).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(taken) = slots.acquire_many_owned(owed).await {
                        taken.forget();
                    }
                });
            }
        }
        *current = size;
    }

    /// Free slots now (for tests and the `--check` output).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resizing_keeps_one_budget_for_slots_already_taken() {
        let budget = InFlightBudget::new(2);
        let a = budget.try_acquire().unwrap();
        let b = budget.try_acquire().unwrap();
        assert!(budget.try_acquire().is_none());
        // A reload to the same size must not add room next to the held slots.
        budget.resize(2);
        assert!(budget.try_acquire().is_none());
        // Growing adds only the difference.
        budget.resize(3);
        let c = budget.try_acquire().unwrap();
        assert!(budget.try_acquire().is_none());
        // Shrinking to 1 while 3 are held: no new slot until two finish.
        budget.resize(1);
        drop(a);
        tokio::task::yield_now().await;
        assert!(budget.try_acquire().is_none());
        drop(b);
        tokio::task::yield_now().await;
        assert!(budget.try_acquire().is_none());
        drop(c);
        tokio::task::yield_now().await;
        let d = budget.try_acquire().unwrap();
        assert!(budget.try_acquire().is_none());
        drop(d);
        assert_eq!(budget.available(), 1);
        assert_eq!(budget.size(), 1);
    }
}
