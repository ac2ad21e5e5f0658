//! A bounded, thread-safe, in-memory map for temporary face tokens.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::token::FaceToken;

/// Limits of a [`TokenCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheConfig {
    /// Most entries kept; inserting beyond it evicts the oldest.
    pub max_entries: usize,
    /// Age at which an entry expires.
    pub ttl: Duration,
}

impl Default for TokenCacheConfig {
    /// 100,000 entries, 72 hours.
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            ttl: Duration::from_secs(72 * 3600),
        }
    }
}

/// A map from face token to `V` bounded in count and age.
///
/// Entries leave oldest first (FIFO by insertion time): when a new entry
/// would exceed [`TokenCacheConfig::max_entries`], or when they reach
/// [`TokenCacheConfig::ttl`]. Every method that evicts returns the evicted
/// tokens so that the caller can release what belongs to them (crop files,
/// say). Expired entries are never returned by [`get`](Self::get); they are
/// evicted (and reported) by the next [`insert`](Self::insert) or
/// [`purge_expired`](Self::purge_expired).
///
/// Thread-safe: a mutex inside; share it with an `Arc`. The `*_at` methods
/// take the current time as an argument (for tests and for callers that
/// already have it); the others use [`Instant::now`].
///
/// Memory stays flat: the map never holds more than `max_entries` entries,
/// and the insertion queue is compacted when stale entries (from
/// [`remove`](Self::remove) or re-inserts) make it twice that long.
///
/// ```
/// use std::time::Duration;
/// use facerec_store::{FaceToken, TokenCache, TokenCacheConfig};
/// let cache = TokenCache::new(TokenCacheConfig { max_entries: 2, ttl: Duration::from_secs(60) });
/// let token = |t| FaceToken::parse(t).unwrap();
/// assert!(cache.insert(token("a"), 1).is_empty());
/// assert!(cache.insert(token("b"), 2).is_empty());
/// assert_eq!(cache.insert(token("c"), 3), ["a"]); // the oldest is evicted and reported
/// assert_eq!(cache.get("a"), None);
/// assert_eq!(cache.get("c"), Some(3));
/// ```
#[derive(Debug)]
pub struct TokenCache<V> {
    config: TokenCacheConfig,
    inner: Mutex<Inner<V>>,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    inserted_at: Instant,
    seq: u64,
}

#[derive(Debug)]
struct Inner<V> {
    /// Live entries by token.
    map: HashMap<FaceToken, Entry<V>>,
    /// (token, inserted_at, seq) in insertion order; an element whose seq
    /// differs from the map entry's (or whose token is gone) is stale.
    queue: VecDeque<(FaceToken, Instant, u64)>,
    next_seq: u64,
    /// Latest insertion time; later inserts never get an earlier one, so the
    /// queue stays in age order even if a caller's clock steps back.
    latest: Option<Instant>,
}

impl<V> Inner<V> {
    fn is_live(&self, token: &FaceToken, seq: u64) -> bool {
        self.map.get(token).is_some_and(|e| e.seq == seq)
    }

    /// Pops stale queue heads; returns whether a live head remains.
    fn skip_stale(&mut self) -> bool {
        while let Some((token, _, seq)) = self.queue.front() {
            if self.is_live(token, *seq) {
                return true;
            }
            self.queue.pop_front();
        }
        false
    }

    fn evict_front(&mut self, out: &mut Vec<FaceToken>) {
        if let Some((token, _, _)) = self.queue.pop_front() {
            self.map.remove(&token);
            out.push(token);
        }
    }

    fn purge_expired(&mut self, now: Instant, ttl: Duration, out: &mut Vec<FaceToken>) {
        while self.skip_stale() {
            let expired = self
                .queue
                .front()
                .is_some_and(|(_, at, _)| expired(*at, now, ttl));
            if !expired {
                break;
            }
            self.evict_front(out);
        }
    }

    fn compact(&mut self) {
        let map = &self.map;
        self.queue
            .retain(|(token, _, seq)| map.get(token).is_some_and(|e| e.seq == *seq));
    }
}

fn expired(inserted_at: Instant, now: Instant, ttl: Duration) -> bool {
    now.checked_duration_since(inserted_at)
        .is_some_and(|age| age >= ttl)
}

impl<V> Default for TokenCache<V> {
    fn default() -> Self {
        Self::new(TokenCacheConfig::default())
    }
}

impl<V> TokenCache<V> {
    /// An empty cache. A `max_entries` of 0 is taken as 1.
    pub fn new(config: TokenCacheConfig) -> Self {
        let config = TokenCacheConfig {
            max_entries: config.max_entries.max(1),
            ..config
        };
        Self {
            config,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                queue: VecDeque::new(),
                next_seq: 0,
                latest: None,
            }),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> TokenCacheConfig {
        self.config
    }

    /// Inserts (or replaces, renewing its age) an entry now; returns the
    /// tokens evicted to make room or because they expired, oldest first.
    pub fn insert(&self, token: FaceToken, value: V) -> Vec<FaceToken> {
        self.insert_at(token, value, Instant::now())
    }

    /// [`insert`](Self::insert) at a given time.
    pub fn insert_at(&self, token: FaceToken, value: V, now: Instant) -> Vec<FaceToken> {
        let mut evicted = Vec::new();
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let now = match inner.latest {
            Some(latest) if latest > now => latest,
            _ => now,
        };
        inner.latest = Some(now);
        inner.purge_expired(now, self.config.ttl, &mut evicted);

        let seq = inner.next_seq;
        inner.next_seq += 1;
        let entry = Entry {
            value,
            inserted_at: now,
            seq,
        };
        inner.map.insert(token.clone(), entry);
        inner.queue.push_back((token, now, seq));
        while inner.map.len() > self.config.max_entries && inner.skip_stale() {
            inner.evict_front(&mut evicted);
        }
        // Stale queue elements accumulate only through re-inserts and
        // removes; compact before they double the queue.
        if inner.queue.len() > 2 * self.config.max_entries {
            inner.compact();
        }
        drop(g);
        if !evicted.is_empty() {
            tracing::debug!(count = evicted.len(), "token cache evicted entries");
        }
        evicted
    }

    /// Removes an entry (expired or not) and returns its value.
    pub fn remove(&self, token: &str) -> Option<V> {
        let mut g = self.inner.lock();
        // The queue element goes stale; it is skipped or compacted later.
        let value = g.map.remove(token).map(|e| e.value);
        if g.queue.len() > 2 * self.config.max_entries {
            g.compact();
        }
        value
    }

    /// Evicts every entry that has reached the TTL at `now`; returns their
    /// tokens, oldest first.
    pub fn purge_expired(&self, now: Instant) -> Vec<FaceToken> {
        let mut evicted = Vec::new();
        self.inner
            .lock()
            .purge_expired(now, self.config.ttl, &mut evicted);
        evicted
    }

    /// Number of entries held (expired ones not yet purged included).
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    /// Whether the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `token` is present and not expired now.
    pub fn contains(&self, token: &str) -> bool {
        self.contains_at(token, Instant::now())
    }

    /// [`contains`](Self::contains) at a given time.
    pub fn contains_at(&self, token: &str, now: Instant) -> bool {
        self.inner
            .lock()
            .map
            .get(token)
            .is_some_and(|e| !expired(e.inserted_at, now, self.config.ttl))
    }
}

impl<V: Clone> TokenCache<V> {
    /// A clone of the value for `token`, unless absent or expired now.
    pub fn get(&self, token: &str) -> Option<V> {
        self.get_at(token, Instant::now())
    }

    /// [`get`](Self::get) at a given time.
    pub fn get_at(&self, token: &str, now: Instant) -> Option<V> {
        let g = self.inner.lock();
        let e = g.map.get(token)?;
        if expired(e.inserted_at, now, self.config.ttl) {
            None
        } else {
            Some(e.value.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn t(text: &str) -> FaceToken {
        FaceToken::parse(text).unwrap()
    }

    fn cache(max: usize, ttl_s: u64) -> TokenCache<u32> {
        TokenCache::new(TokenCacheConfig {
            max_entries: max,
            ttl: Duration::from_secs(ttl_s),
        })
    }

    #[test]
    fn defaults() {
        let c = TokenCacheConfig::default();
        assert_eq!(c.max_entries, 100_000);
        assert_eq!(c.ttl, Duration::from_secs(259_200));
    }

    #[test]
    fn count_bound_evicts_oldest_first_and_reports() {
        let c = cache(3, 3600);
        let t0 = Instant::now();
        for i in 0..3u32 {
            assert!(c.insert_at(t(&format!("t{i}")), i, t0).is_empty());
        }
        assert_eq!(c.insert_at(t("t3"), 3, t0), ["t0"]);
        assert_eq!(c.insert_at(t("t4"), 4, t0), ["t1"]);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get_at("t0", t0), None);
        assert_eq!(c.get_at("t1", t0), None);
        assert_eq!(c.get_at("t2", t0), Some(2));
        assert_eq!(c.get_at("t4", t0), Some(4));
    }

    #[test]
    fn ttl_expiry_without_sleeping() {
        let c = cache(100, 10);
        let t0 = Instant::now();
        c.insert_at(t("a"), 1, t0);
        c.insert_at(t("b"), 2, t0 + Duration::from_secs(5));
        let t9 = t0 + Duration::from_secs(9);
        assert_eq!(c.get_at("a", t9), Some(1));
        let t10 = t0 + Duration::from_secs(10);
        // expired at exactly the TTL: not returned, still counted until purged
        assert_eq!(c.get_at("a", t10), None);
        assert!(!c.contains_at("a", t10));
        assert_eq!(c.get_at("b", t10), Some(2));
        assert_eq!(c.len(), 2);
        assert_eq!(c.purge_expired(t10), ["a"]);
        assert_eq!(c.len(), 1);
        assert!(c.purge_expired(t10).is_empty());
        // an insert purges expired entries and reports them
        let t20 = t0 + Duration::from_secs(20);
        assert_eq!(c.insert_at(t("c"), 3, t20), ["b"]);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get_at("c", t20), Some(3));
    }

    #[test]
    fn expiry_and_overflow_reported_together_in_age_order() {
        let c = cache(2, 10);
        let t0 = Instant::now();
        c.insert_at(t("old"), 0, t0);
        c.insert_at(t("mid"), 1, t0 + Duration::from_secs(6));
        c.insert_at(t("new"), 2, t0 + Duration::from_secs(12));
        // "old" expired at 10 s (reported first); then the cap still holds 2
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.insert_at(t("x"), 3, t0 + Duration::from_secs(13)),
            ["mid"]
        );
    }

    #[test]
    fn reinsert_renews_and_remove_takes() {
        let c = cache(2, 10);
        let t0 = Instant::now();
        c.insert_at(t("a"), 1, t0);
        c.insert_at(t("b"), 2, t0);
        // re-insert "a": now the newest, value replaced, nothing evicted
        assert!(
            c.insert_at(t("a"), 10, t0 + Duration::from_secs(5))
                .is_empty()
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c.insert_at(t("c"), 3, t0 + Duration::from_secs(5)), ["b"]);
        assert_eq!(c.get_at("a", t0 + Duration::from_secs(12)), Some(10));
        assert_eq!(c.remove("a"), Some(10));
        assert_eq!(c.remove("a"), None);
        assert_eq!(c.len(), 1);
        // the stale queue element of "a" is not reported later
        assert_eq!(c.purge_expired(t0 + Duration::from_secs(100)), ["c"]);
        assert!(c.is_empty());
    }

    #[test]
    fn clock_stepping_back_keeps_age_order() {
        let c = cache(10, 10);
        let t0 = Instant::now() + Duration::from_secs(100);
        c.insert_at(t("a"), 1, t0);
        c.insert_at(t("b"), 2, t0 - Duration::from_secs(50));
        // "b" is taken as inserted at t0, not earlier
        assert_eq!(c.purge_expired(t0 + Duration::from_secs(10)), ["a", "b"]);
    }

    #[test]
    fn flood_keeps_memory_flat() {
        let max = 100_000;
        let c = cache(max, 3600);
        let t0 = Instant::now();
        let mut evicted = 0;
        let mut first_queue_cap = None;
        for i in 0..300_000u32 {
            let ev = c.insert_at(t(&format!("tok{i:021}")), i, t0);
            evicted += ev.len();
            if i >= 100_000 && i % 5_000 == 0 {
                let g = c.inner.lock();
                assert_eq!(g.map.len(), max);
                // The map's capacity() wobbles with tombstones but its table
                // stops growing: hashbrown rehashes in place once fewer than
                // half of its slots are live, so at most 2^18 buckets here
                // (7/8 of them usable).
                assert!(
                    g.map.capacity() <= 229_376,
                    "map capacity {}",
                    g.map.capacity()
                );
                let qc = g.queue.capacity();
                assert!(qc <= 2 * max, "queue capacity {qc}");
                assert_eq!(*first_queue_cap.get_or_insert(qc), qc);
            }
        }
        assert_eq!(c.len(), max);
        assert_eq!(evicted, 200_000);
        assert_eq!(c.get_at("tok000000000000000199999", t0), None);
        assert_eq!(c.get_at("tok000000000000000200000", t0), Some(200_000));
    }

    #[test]
    fn churn_of_removes_and_reinserts_stays_bounded() {
        let c = cache(100, 3600);
        let t0 = Instant::now();
        for round in 0..10_000u32 {
            let tk = t(&format!("t{}", round % 50));
            c.insert_at(tk.clone(), round, t0);
            if round % 3 == 0 {
                c.remove(tk.as_str());
            }
        }
        let g = c.inner.lock();
        assert!(g.queue.len() <= 2 * 100 + 1, "{}", g.queue.len());
        assert!(g.map.len() <= 50);
    }

    #[test]
    fn shared_between_threads() {
        let c = Arc::new(cache(1000, 3600));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..1000u32 {
                        c.insert(FaceToken::parse(&format!("{t}-{i}")).unwrap(), i);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.len(), 1000);
    }
}
