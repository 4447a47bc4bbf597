//! Per-endpoint in-flight caps.
//!
//! A job whose endpoint is at its cap waits a little for a slot: a healthy endpoint
//! frees one within milliseconds, so a burst to one busy endpoint is delivered at the
//! rate the cap allows instead of being parked. Only a job that waited the whole bound
//! (its endpoint is slow or hanging) gives up its place; and until one of that
//! endpoint's slots is given back, its next jobs give up at once instead of each
//! holding a place for the whole wait.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Each endpoint's count, and the endpoints a job waited the whole bound for since their
/// last slot was given back.
#[derive(Debug, Default)]
struct Counts {
    semaphores: HashMap<String, Arc<Semaphore>>,
    saturated: HashSet<String>,
}

type Endpoints = Arc<Mutex<Counts>>;

/// Counts the attempts in flight to each endpoint in this worker.
#[derive(Debug, Clone)]
pub struct EndpointSlots {
    cap: usize,
    wait: Duration,
    endpoints: Endpoints,
}

/// One attempt's place in its endpoint's count, given back when dropped.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    endpoint: String,
    endpoints: Endpoints,
}

impl EndpointSlots {
    /// At most `cap` attempts to one endpoint at a time; a job waits up to `wait` for
    /// its turn.
    pub fn new(cap: usize, wait: Duration) -> Self {
        Self { cap: cap.max(1), wait, endpoints: Arc::default() }
    }

    /// A slot for `endpoint`, or `None` when it stayed at its cap for the whole wait (or
    /// at once, when it did so for another job and has given no slot back since).
    pub async fn take(&self, endpoint: &str) -> Option<Slot> {
        let (semaphore, saturated) = {
            let mut counts = self.endpoints.lock().ok()?;
            let semaphore = counts
                .semaphores
                .entry(endpoint.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.cap)))
                .clone();
            (semaphore, counts.saturated.contains(endpoint))
        };
        let slot =
            |permit| Slot { permit: Some(permit), endpoint: endpoint.to_owned(), endpoints: self.endpoints.clone() };
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Some(slot(permit));
        }
        if saturated {
            return None;
        }
        match tokio::time::timeout(self.wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Some(slot(permit)),
            Ok(Err(_)) => None,
            Err(_) => {
                if let Ok(mut counts) = self.endpoints.lock() {
                    counts.saturated.insert(endpoint.to_owned());
                }
                None
            }
        }
    }

    /// How many more attempts to `endpoint` this worker could start now.
    pub fn free(&self, endpoint: &str) -> usize {
        self.endpoints
            .lock()
            .ok()
            .and_then(|counts| counts.semaphores.get(endpoint).map(|semaphore| semaphore.available_permits()))
            .unwrap_or(self.cap)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        // Forget an endpoint nobody holds or waits for, so the map does not grow with
        // every endpoint ever delivered to. Clones are made under this lock, so the
        // count cannot rise while it is held.
        if let Ok(mut counts) = self.endpoints.lock() {
            counts.saturated.remove(&self.endpoint);
            if counts.semaphores.get(&self.endpoint).is_some_and(|semaphore| Arc::strong_count(semaphore) == 1) {
                counts.semaphores.remove(&self.endpoint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::ZERO;

    #[tokio::test]
    async fn slots_are_capped_per_endpoint_and_returned_on_drop() {
        let slots = EndpointSlots::new(2, NO_WAIT);
        let a1 = slots.take("a").await.unwrap();
        let _a2 = slots.take("a").await.unwrap();
        assert!(slots.take("a").await.is_none());
        assert!(slots.take("b").await.is_some(), "another endpoint is not affected");
        drop(a1);
        assert!(slots.take("a").await.is_some());
    }

    #[tokio::test]
    async fn a_job_at_the_cap_gets_the_slot_freed_during_its_wait() {
        let slots = EndpointSlots::new(1, Duration::from_secs(30));
        let first = slots.take("a").await.unwrap();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take("a").await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the second job waits while the first holds the slot");
        drop(first);
        assert!(waiting.await.unwrap(), "the freed slot goes to the waiting job");
    }

    #[tokio::test]
    async fn endpoints_no_one_uses_are_forgotten() {
        let slots = EndpointSlots::new(1, NO_WAIT);
        drop(slots.take("a").await.unwrap());
        assert!(slots.endpoints.lock().unwrap().semaphores.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_whole_wait_an_endpoints_next_jobs_give_up_at_once_until_a_slot_is_given_back() {
        let slots = EndpointSlots::new(1, Duration::from_secs(1));
        let held = slots.take("a").await.unwrap();
        assert_eq!(slots.free("a"), 0);
        let started = tokio::time::Instant::now();
        assert!(slots.take("a").await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(1), "the first job waits the whole bound");
        let started = tokio::time::Instant::now();
        assert!(slots.take("a").await.is_none());
        assert_eq!(started.elapsed(), Duration::ZERO, "the next gives up at once");
        assert!(slots.take("b").await.is_some(), "another endpoint is not affected");
        drop(held);
        assert_eq!(slots.free("a"), 1);
        let again = slots.take("a").await;
        assert!(again.is_some(), "a slot given back ends it");
        let started = tokio::time::Instant::now();
        assert!(slots.take("a").await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(1), "and the next job at the cap waits again");
    }
}
