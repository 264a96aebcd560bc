//! The customer check's positive cache: "accounts said this user id is a CUSTOMER", kept for
//! `customer_cache_ttl_ms` in this process, so a customer placing several orders in a row costs
//! accounts one `GetUserById` (and one global-Postgres query) per TTL instead of one per order.
//!
//! Only positive answers are kept: a NotFound, a non-customer or a failed call is asked again
//! next time, so a refusal is never stale and an outage is never remembered. The price is
//! bounded staleness the other way: a deleted or demoted account can still buy for up to the
//! TTL after accounts stopped saying yes. An entry is dated from when the question was *sent*
//! (not answered) and a hit never extends it, so "up to the TTL" holds as stated.
//!
//! Memory is bounded by `customer_cache_max_entries`: when full, expired entries are dropped,
//! and if none were, the whole map is cleared (the next orders ask accounts again). A clear is
//! rare (it needs that many distinct customers within one TTL) and costs only extra calls, so
//! an LRU is not worth a crate here.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// The per-process cache of confirmed customers (see the module docs).
#[derive(Debug)]
pub struct CustomerCache {
    /// How long a positive answer is trusted; zero turns the cache off.
    ttl: Duration,
    /// Most user ids held at once.
    max_entries: usize,
    /// When the question that confirmed each user id was sent.
    confirmed: Mutex<HashMap<Uuid, Instant>>,
}

impl CustomerCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self { ttl, max_entries, confirmed: Mutex::new(HashMap::new()) }
    }

    /// Whether the cache is on (a TTL above zero).
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Whether `id` was confirmed a CUSTOMER less than the TTL before `now`; an expired entry is
    /// dropped on the way.
    pub fn is_confirmed(&self, id: Uuid, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        let mut map = self.confirmed.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&id) {
            Some(asked) if now.saturating_duration_since(*asked) < self.ttl => true,
            Some(_) => {
                map.remove(&id);
                false
            }
            None => false,
        }
    }

    /// Records that accounts confirmed `id`, for a question sent at `asked_at`.
    pub fn confirm(&self, id: Uuid, asked_at: Instant) {
        if !self.enabled() {
            return;
        }
        let mut map = self.confirmed.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.max_entries && !map.contains_key(&id) {
            let ttl = self.ttl;
            map.retain(|_, asked| asked_at.saturating_duration_since(*asked) < ttl);
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        map.insert(id, asked_at);
    }

    /// How many user ids are held (expired ones included until dropped).
    pub fn len(&self) -> usize {
        self.confirmed.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);

    #[test]
    fn a_confirmation_holds_for_the_ttl_from_when_it_was_asked_and_no_longer() {
        let cache = CustomerCache::new(TTL, 10);
        let (id, t0) = (Uuid::new_v4(), Instant::now());
        assert!(!cache.is_confirmed(id, t0));
        cache.confirm(id, t0);
        assert!(cache.is_confirmed(id, t0 + Duration::from_millis(4999)));
        // A hit does not extend the entry: past the TTL from the question, ask again.
        assert!(!cache.is_confirmed(id, t0 + TTL));
        assert!(cache.is_empty(), "the expired entry is dropped");
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = CustomerCache::new(Duration::ZERO, 10);
        let (id, t0) = (Uuid::new_v4(), Instant::now());
        cache.confirm(id, t0);
        assert!(!cache.is_confirmed(id, t0));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_then_everything() {
        let cache = CustomerCache::new(TTL, 3);
        let t0 = Instant::now();
        let old = Uuid::new_v4();
        cache.confirm(old, t0);
        let later = t0 + Duration::from_secs(6);
        let fresh: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
        for id in &fresh {
            cache.confirm(*id, later);
        }
        // Full: the expired one goes, the fresh ones stay.
        let newest = Uuid::new_v4();
        cache.confirm(newest, later);
        assert_eq!(cache.len(), 3);
        assert!(fresh.iter().all(|id| cache.is_confirmed(*id, later)));
        // Full of fresh entries: cleared, so memory stays bounded; only the newest is kept.
        let one_more = Uuid::new_v4();
        cache.confirm(one_more, later);
        assert_eq!(cache.len(), 1);
        assert!(cache.is_confirmed(one_more, later));
        // Re-confirming an id already held never evicts.
        let cache = CustomerCache::new(TTL, 1);
        cache.confirm(one_more, t0);
        cache.confirm(one_more, later);
        assert!(cache.is_confirmed(one_more, later));
    }
}
