//! Per-endpoint in-flight caps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts the attempts in flight to each endpoint in this worker.
#[derive(Debug, Clone)]
pub struct EndpointSlots {
    cap: usize,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

/// One attempt's place in its endpoint's count, given back when dropped.
pub struct Slot {
    endpoint: String,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl EndpointSlots {
    /// At most `cap` attempts to one endpoint at a time.
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), in_flight: Arc::default() }
    }

    /// A slot for `endpoint`, or `None` when it already has `cap` attempts in flight.
    pub fn try_take(&self, endpoint: &str) -> Option<Slot> {
        let mut in_flight = self.in_flight.lock().ok()?;
        let count = in_flight.entry(endpoint.to_owned()).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Slot { endpoint: endpoint.to_owned(), in_flight: self.in_flight.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.in_flight.lock()
            && let Some(count) = in_flight.get_mut(&self.endpoint)
        {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.endpoint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_endpoint_and_returned_on_drop() {
        let slots = EndpointSlots::new(2);
        let a1 = slots.try_take("a").unwrap();
        let _a2 = slots.try_take("a").unwrap();
        assert!(slots.try_take("a").is_none());
        assert!(slots.try_take("b").is_some(), "another endpoint is not affected");
        drop(a1);
        assert!(slots.try_take("a").is_some());
    }
}
