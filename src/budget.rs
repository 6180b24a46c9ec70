//! One process-wide budget of bytes for ingestion: request bodies, decoded items and queued events.
//!
//! Each request reserves the bytes it is about to hold (the compressed body as it arrives, the
//! decoded event, the prepared row until its commit) and gives them back when it lets go, so
//! that however many requests run at once, what they hold together never exceeds the budget.
//! A request that cannot get its bytes waits briefly (the semaphore is fair: first come, first
//! served) and is then refused with 503, instead of pushing the process past the budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget, shared by every request of one process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    sem: Arc<Semaphore>,
    total: usize,
    wait: Duration,
    /// The most bytes ever reserved at once (for health and tests).
    peak: Arc<AtomicUsize>,
}

/// Why bytes could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server's ingestion memory budget is exhausted, retry later")]
pub struct Exhausted;

/// Bytes held out of the budget; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    /// A budget of `total` bytes; a reservation waits at most `wait` for bytes to free up.
    pub fn new(total: usize, wait: Duration) -> MemoryBudget {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        MemoryBudget {
            sem: Arc::new(Semaphore::new(total)),
            total,
            wait,
            peak: Arc::default(),
        }
    }

    /// The most bytes reserved at once since the start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn note_peak(&self) {
        self.peak.fetch_max(self.in_use(), Ordering::Relaxed);
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> usize {
        self.total.saturating_sub(self.sem.available_permits())
    }

    /// An empty reservation, to grow as bytes arrive.
    pub fn empty(&self) -> Reservation {
        Reservation { permit: None }
    }

    /// Reserves `n` bytes, waiting up to the budget's wait for them.
    pub async fn reserve(&self, n: usize) -> Result<Reservation, Exhausted> {
        let mut r = self.empty();
        self.grow(&mut r, n).await?;
        Ok(r)
    }

    /// Adds `n` bytes to `r`, waiting up to the budget's wait for them.
    pub async fn grow(&self, r: &mut Reservation, n: usize) -> Result<(), Exhausted> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| Exhausted)?;
        if n as usize > self.total {
            return Err(Exhausted);
        }
        let permit = match self.sem.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(self.wait, self.sem.clone().acquire_many_owned(n))
                .await
                .map_err(|_| Exhausted)?
                .map_err(|_| Exhausted)?,
        };
        r.merge(permit);
        self.note_peak();
        Ok(())
    }

    /// Adds `n` bytes to `r` only if they are free now (for synchronous code).
    pub fn try_grow(&self, r: &mut Reservation, n: usize) -> Result<(), Exhausted> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| Exhausted)?;
        let permit = self
            .sem
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| Exhausted)?;
        r.merge(permit);
        self.note_peak();
        Ok(())
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Gives back everything above `n` bytes (what is no longer held, e.g. a body once its
    /// event is prepared).
    pub fn shrink_to(&mut self, n: usize) {
        let held = self.bytes();
        if held <= n {
            return;
        }
        if let Some(p) = self.permit.as_mut() {
            // The split-off part is dropped at once: returned to the budget.
            drop(p.split(held - n));
        }
    }

    fn merge(&mut self, permit: OwnedSemaphorePermit) {
        match self.permit.as_mut() {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_share_one_budget_and_give_back() {
        let b = MemoryBudget::new(100, Duration::from_millis(10));
        let mut a = b.reserve(60).await.unwrap();
        assert_eq!(b.in_use(), 60);
        assert_eq!(b.reserve(50).await.unwrap_err(), Exhausted);
        b.grow(&mut a, 40).await.unwrap();
        assert_eq!(a.bytes(), 100);
        assert!(b.try_grow(&mut a, 1).is_err());
        a.shrink_to(30);
        assert_eq!(b.in_use(), 30);
        let c = b.reserve(70).await.unwrap();
        drop(a);
        drop(c);
        assert_eq!(b.in_use(), 0);
        assert_eq!(b.peak(), 100);
        // More than the whole budget can never be had: refused at once, not after a wait.
        assert_eq!(b.reserve(101).await.unwrap_err(), Exhausted);
    }

    #[tokio::test]
    async fn a_waiter_gets_bytes_freed_within_the_wait() {
        let b = MemoryBudget::new(10, Duration::from_secs(5));
        let held = b.reserve(10).await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.reserve(5).await.map(|r| r.bytes()) });
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(5));
    }
}
