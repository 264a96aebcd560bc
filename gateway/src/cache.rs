//! Cache-aside in Redis for the hot reads: pages of `events` and single events by id.
//!
//! # Keys (all under the configured prefix)
//! - `events:gen:{REGION}`: a region's generation, bumped by every mutation touching the
//!   region. It is part of every page key covering the region, so a bump makes those pages
//!   unreachable at once (they expire by TTL) without scanning for them.
//! - `events:page:{REGION|*}:{generations}:{organizer|-}:{first}:{after|-}`: one `events`
//!   page, the orders service's JSON as it answered.
//! - `event:{id}`: one event, as orders answered `GET /api/v1/events/{id}`.
//! - `event:{id}:gen`: that event's generation. An invalidation bumps it and deletes the
//!   event; a read-miss writes back only if the generation it saw before fetching is still
//!   current (one Lua script), so a slow read can never put back stock older than a mutation.
//! - `response:{sha256 of the request body}`: a whole answer's `data`, in its final serialized
//!   form, behind the generations it was built on (`key\tvalue` pairs, then a newline). A hit
//!   is one script call that compares each generation with its current value and returns the
//!   bytes, so a repeated read costs one Redis round trip and no GraphQL work at all
//!   ([`crate::http`] decides which documents qualify). The script reads keys it was not
//!   passed (the generations named in the entry), which a single Redis allows and Redis
//!   Cluster would not: a cluster deployment would need the keys in one hash slot.
//!
//! # Invalidation
//! `createEvent` bumps its region; `createOrder` bumps its region and invalidates its event
//! (stock changed); `payOrder` changes nothing cached (no cached value holds an order), so it
//! touches no key.
//!
//! # Outage
//! Every operation is bounded by `redis_timeout_ms`. A failed read skips Redis for
//! `redis_retry_ms` (reads go straight to the services); a failed invalidation skips it for a
//! whole TTL on this instance, since any value it meant to remove is then stale for at most
//! that long. No cache failure ever fails a query.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use platform::redis::RedisPool;
use redis::FromRedisValue;

use crate::downstream::Tally;

/// Sets `KEYS[1]` to `ARGV[2]` for `ARGV[3]` seconds only if `KEYS[2]` (the generation) still
/// reads `ARGV[1]` (`"0"` standing for absent).
const GUARDED_SET: &str = r"
local gen = redis.call('GET', KEYS[2]) or '0'
if gen == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  return 1
end
return 0
";

/// Returns `KEYS[1]`'s answer bytes if every generation its entry was built on is still
/// current, else nothing (the caller then answers the request the long way and stores it anew).
const RESPONSE_HIT: &str = r"
local entry = redis.call('GET', KEYS[1])
if not entry then return false end
local nl = string.find(entry, '\n', 1, true)
if not nl then return false end
for key, want in string.gmatch(string.sub(entry, 1, nl - 1), '([^\t]+)\t([^\t]+)\t?') do
  if (redis.call('GET', key) or '0') ~= want then return false end
end
return string.sub(entry, nl + 1)
";

/// The generations one request's cached reads were built on, as read from Redis: what a
/// stored answer must still match to be served again.
#[derive(Debug, Default)]
pub struct Deps {
    pairs: Vec<(String, String)>,
    /// A read went around Redis (down, skipped, or it failed): the answer depends on
    /// generations nobody read, so it is not stored.
    incomplete: bool,
}

impl Deps {
    fn add(&mut self, key: String, generation: String) {
        if !self.pairs.iter().any(|(k, _)| *k == key) {
            self.pairs.push((key, generation));
        }
    }

    /// The entry's header: every pair, `None` when an answer on them must not be stored.
    fn header(&self) -> Option<String> {
        if self.incomplete || self.pairs.is_empty() {
            return None;
        }
        let mut out = String::new();
        for (key, generation) in &self.pairs {
            if !out.is_empty() {
                out.push('\t');
            }
            out.push_str(key);
            out.push('\t');
            out.push_str(generation);
        }
        Some(out)
    }
}

/// Which cache a lookup used, the `cache` label of `gateway_cache_requests_total`.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `events` pages.
    Events,
    /// `event(id)` and the events nested in orders.
    Event,
    /// Whole answers ([`Cache::response`]).
    Response,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Event => "event",
            Self::Response => "response",
        }
    }
}

#[derive(Clone)]
pub struct Cache {
    pool: RedisPool,
    prefix: String,
    ttl_secs: u64,
    /// Bound on one operation, checkout included.
    op_timeout: Duration,
    /// How long reads skip Redis after a failed operation.
    retry: Duration,
    /// Until when (milliseconds after `epoch`) Redis is skipped; 0 when it is in use.
    skip_until_ms: Arc<AtomicU64>,
    epoch: Instant,
    guarded_set: Arc<redis::Script>,
    response_hit: Arc<redis::Script>,
    /// Digests of request bodies whose answer was stored: only those are looked up, so a
    /// mutation or a personal query never pays a round trip for an answer that cannot exist.
    /// Per process, bounded (emptied when full: the next request of each body refills it).
    stored: Arc<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>>,
}

/// Most digests [`Cache::stored`] keeps.
const MAX_STORED_DIGESTS: usize = 16_384;

/// What a batch of event lookups found.
#[derive(Debug, Default)]
pub struct EventLookup {
    /// Cached events (JSON) by id.
    pub hits: HashMap<String, String>,
    /// The generation each missed id had before the fetch; empty when Redis did not answer,
    /// in which case nothing is written back.
    pub generations: HashMap<String, String>,
}

enum Op<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

impl Cache {
    pub fn new(pool: RedisPool, prefix: &str, ttl_secs: u64, op_timeout: Duration, retry: Duration) -> Self {
        Self {
            pool,
            prefix: prefix.to_owned(),
            ttl_secs,
            op_timeout,
            retry,
            skip_until_ms: Arc::default(),
            epoch: Instant::now(),
            guarded_set: Arc::new(redis::Script::new(GUARDED_SET)),
            response_hit: Arc::new(redis::Script::new(RESPONSE_HIT)),
            stored: Arc::default(),
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn in_use(&self) -> bool {
        self.now_ms() >= self.skip_until_ms.load(Ordering::Relaxed)
    }

    fn skip_for(&self, d: Duration) {
        let until = self.now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.skip_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// Runs one Redis operation within the bound; any failure is logged, counted and turned
    /// into `None` after setting the skip window.
    async fn exec<T: FromRedisValue>(&self, name: &'static str, op: Op<'_>) -> Option<T> {
        let work = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            let result = match op {
                Op::Cmd(c) => c.query_async(&mut *conn).await,
                Op::Pipe(p) => p.query_async(&mut *conn).await,
                Op::Script(s) => s.invoke_async(&mut *conn).await,
            };
            result.map_err(|e| e.to_string())
        };
        let error = match tokio::time::timeout(self.op_timeout, work).await {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {} ms", self.op_timeout.as_millis()),
        };
        tracing::warn!(operation = name, error, "cache unavailable; reading around it");
        metrics::counter!("gateway_cache_errors_total", "operation" => name).increment(1);
        self.skip_for(self.retry);
        None
    }

    fn count(kind: Kind, result: &'static str, n: u64) {
        metrics::counter!("gateway_cache_requests_total", "cache" => kind.as_str(), "result" => result).increment(n);
    }

    fn region_gen_key(&self, region: &str) -> String {
        format!("{}events:gen:{region}", self.prefix)
    }

    fn event_key(&self, id: &str) -> String {
        format!("{}event:{id}", self.prefix)
    }

    fn event_gen_key(&self, id: &str) -> String {
        format!("{}event:{id}:gen", self.prefix)
    }

    /// The key of one `events` page covering `regions` (`scope` is the region or `*`), built
    /// on their current generations; `None` when Redis is not in use. The parts are validated
    /// by the caller (region names, a UUID, a number, a base64url cursor).
    pub async fn page_key(
        &self,
        scope: &str,
        regions: &[&str],
        organizer: Option<&str>,
        first: i32,
        after: Option<&str>,
        tally: &Tally,
    ) -> Option<String> {
        if !self.in_use() {
            Self::count(Kind::Events, "bypass", 1);
            tally.deps().incomplete = true;
            return None;
        }
        let keys: Vec<String> = regions.iter().map(|r| self.region_gen_key(r)).collect();
        let Some(gens) =
            self.exec::<Vec<Option<u64>>>("page_generations", Op::Cmd(redis::cmd("MGET").arg(&keys))).await
        else {
            tally.deps().incomplete = true;
            return None;
        };
        let gens: Vec<String> = gens.iter().map(|g| g.unwrap_or(0).to_string()).collect();
        let mut deps = tally.deps();
        for (key, generation) in keys.into_iter().zip(&gens) {
            deps.add(key, generation.clone());
        }
        drop(deps);
        Some(format!(
            "{}events:page:{scope}:{}:{}:{first}:{}",
            self.prefix,
            gens.join("."),
            organizer.unwrap_or("-"),
            after.unwrap_or("-")
        ))
    }

    /// A cached value, counting the hit or miss.
    pub async fn get(&self, kind: Kind, key: &str, tally: &Tally) -> Option<String> {
        let got: Option<String> = self.exec("get", Op::Cmd(redis::cmd("GET").arg(key))).await.flatten();
        Self::count(kind, if got.is_some() { "hit" } else { "miss" }, 1);
        let counter = if got.is_some() { &tally.cache_hits } else { &tally.cache_misses };
        counter.fetch_add(1, Ordering::Relaxed);
        got
    }

    /// Stores a value for one TTL (a page key carries its generations, so no guard is needed).
    pub async fn put(&self, key: &str, value: &str) {
        if self.in_use() {
            let _: Option<()> =
                self.exec("set", Op::Cmd(redis::cmd("SET").arg(key).arg(value).arg("EX").arg(self.ttl_secs))).await;
        }
    }

    /// Looks up a batch of events with one `MGET`, which also reads the generation of each.
    pub async fn events(&self, ids: &[String], tally: &Tally) -> EventLookup {
        let n = u64::try_from(ids.len()).unwrap_or(u64::MAX);
        if !self.in_use() {
            Self::count(Kind::Event, "bypass", n);
            tally.deps().incomplete = true;
            return EventLookup::default();
        }
        let keys: Vec<String> = ids.iter().flat_map(|id| [self.event_key(id), self.event_gen_key(id)]).collect();
        let Some(values) = self.exec::<Vec<Option<String>>>("event_mget", Op::Cmd(redis::cmd("MGET").arg(&keys))).await
        else {
            tally.deps().incomplete = true;
            Self::count(Kind::Event, "miss", n);
            tally.cache_misses.fetch_add(u32::try_from(ids.len()).unwrap_or(u32::MAX), Ordering::Relaxed);
            return EventLookup::default();
        };
        let mut lookup = EventLookup::default();
        let mut deps = tally.deps();
        for (id, pair) in ids.iter().zip(values.chunks(2)) {
            if let [_, generation] = pair {
                deps.add(self.event_gen_key(id), generation.clone().unwrap_or_else(|| "0".into()));
            }
            match pair {
                [Some(value), _] => {
                    lookup.hits.insert(id.clone(), value.clone());
                }
                [None, generation] => {
                    lookup.generations.insert(id.clone(), generation.clone().unwrap_or_else(|| "0".into()));
                }
                _ => {}
            }
        }
        drop(deps);
        let (hits, misses) = (lookup.hits.len(), ids.len() - lookup.hits.len());
        Self::count(Kind::Event, "hit", u64::try_from(hits).unwrap_or(0));
        Self::count(Kind::Event, "miss", u64::try_from(misses).unwrap_or(0));
        tally.cache_hits.fetch_add(u32::try_from(hits).unwrap_or(0), Ordering::Relaxed);
        tally.cache_misses.fetch_add(u32::try_from(misses).unwrap_or(0), Ordering::Relaxed);
        lookup
    }

    /// Writes back a fetched event unless it was invalidated since `generation` was read.
    pub async fn put_event(&self, id: &str, generation: &str, value: &str) {
        if !self.in_use() {
            return;
        }
        let mut invocation = self.guarded_set.prepare_invoke();
        invocation.key(self.event_key(id)).key(self.event_gen_key(id)).arg(generation).arg(value).arg(self.ttl_secs);
        let stored: Option<i64> = self.exec("event_set", Op::Script(&invocation)).await;
        if stored == Some(0) {
            metrics::counter!("gateway_cache_stale_writes_skipped_total").increment(1);
        }
    }

    fn response_key(&self, digest: &[u8; 32]) -> String {
        use std::fmt::Write;
        let mut key = format!("{}response:", self.prefix);
        for byte in digest {
            let _ = write!(key, "{byte:02x}");
        }
        key
    }

    fn stored(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<[u8; 32]>> {
        self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A stored answer's `data` for the request body whose SHA-256 is `digest`, if every
    /// generation it was built on is still current: one round trip, and none for a body whose
    /// answer this process never stored.
    pub async fn response(&self, digest: &[u8; 32]) -> Option<String> {
        if !self.stored().contains(digest) {
            return None;
        }
        if !self.in_use() {
            Self::count(Kind::Response, "bypass", 1);
            return None;
        }
        let mut invocation = self.response_hit.prepare_invoke();
        invocation.key(self.response_key(digest));
        let got: Option<String> = self.exec("response_get", Op::Script(&invocation)).await.flatten();
        Self::count(Kind::Response, if got.is_some() { "hit" } else { "miss" }, 1);
        got
    }

    /// Stores an answer's serialized `data` for one TTL behind the generations in `deps`;
    /// nothing when the reads behind it did not all go through Redis. Whether it is still
    /// current is decided at each hit, so no guard is needed here.
    pub async fn put_response(&self, digest: &[u8; 32], deps: &Deps, data: &str) {
        let Some(header) = deps.header() else { return };
        if self.in_use() {
            let entry = format!("{header}\n{data}");
            let set = redis::cmd("SET").arg(self.response_key(digest)).arg(entry).arg("EX").arg(self.ttl_secs).clone();
            if self.exec::<()>("response_set", Op::Cmd(&set)).await.is_some() {
                let mut stored = self.stored();
                if stored.len() >= MAX_STORED_DIGESTS {
                    stored.clear();
                }
                stored.insert(*digest);
            }
        }
    }

    /// Makes every cached page of `regions` and every cached copy of `events` unreachable, in
    /// one atomic pipeline. Tried even while reads skip Redis: an invalidation that can land
    /// must land. On failure this instance reads around the cache for one TTL.
    pub async fn invalidate(&self, regions: &[&str], events: &[&str]) {
        if regions.is_empty() && events.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for region in regions {
            pipe.cmd("INCR").arg(self.region_gen_key(region)).ignore();
        }
        // An event's generation must outlive any read that saw the previous one; reads are
        // bounded by the downstream timeout, far below this.
        let gen_ttl = self.ttl_secs.saturating_mul(2).max(120);
        for id in events {
            pipe.cmd("INCR").arg(self.event_gen_key(id)).ignore();
            pipe.cmd("EXPIRE").arg(self.event_gen_key(id)).arg(gen_ttl).ignore();
            pipe.cmd("DEL").arg(self.event_key(id)).ignore();
        }
        let done: Option<()> = self.exec("invalidate", Op::Pipe(&pipe)).await;
        let result = if done.is_some() { "ok" } else { "error" };
        metrics::counter!("gateway_cache_invalidations_total", "result" => result).increment(1);
        if done.is_none() {
            self.skip_for(Duration::from_secs(self.ttl_secs));
        }
    }
}
