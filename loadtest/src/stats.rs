//! What a run measured: latency histograms and outcomes per (operation, region, shard), and a
//! per-second timeline per shard for the live line and the chart.
//!
//! One [`Recorder`] behind a mutex: a record is a few hundred nanoseconds under the lock, far
//! below one request's cost, and per-worker histograms (≈140 kB each at 3 significant digits)
//! times thousands of open-loop workers would not fit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram holds, in microseconds; longer ones are clamped (the request
/// timeout is far below it).
const MAX_MICROS: u64 = 120_000_000;

/// An empty latency histogram in microseconds (1 µs to [`MAX_MICROS`] at `sigfig` digits); the
/// bounds are constants, so creation cannot fail.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).unwrap_or_else(|_| unreachable!())
}

/// What a measured request is counted under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The GraphQL operation, e.g. `createOrder`.
    pub op: &'static str,
    pub region: Arc<str>,
    /// The shard the request's data lives on (`*` for a read spanning a region's shards).
    pub shard: Arc<str>,
}

/// One request's result: success, or the error code that answered it.
pub type Outcome = Result<(), String>;

/// A latency histogram in microseconds with counts of outcomes.
#[derive(Debug, Clone)]
pub struct Series {
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Series {
    fn new(sigfig: u8) -> Self {
        let latency = histogram(sigfig);
        Self { latency, ok: 0, errors: BTreeMap::new() }
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }

    fn record(&mut self, latency: Duration, outcome: &Outcome) {
        self.latency.saturating_record(micros(latency));
        match outcome {
            Ok(()) => self.ok += 1,
            Err(code) => *self.errors.entry(code.clone()).or_default() += 1,
        }
    }

    /// Adds `other`'s counts (for region and total rows).
    pub fn merge(&mut self, other: &Series) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.ok += other.ok;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }
}

/// A latency in whole microseconds, within what [`histogram`] holds.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub const ZERO: Self = Self { p50_ms: 0.0, p90_ms: 0.0, p99_ms: 0.0, p999_ms: 0.0, max_ms: 0.0, mean_ms: 0.0 };

    /// From a histogram in microseconds; all zero when it is empty.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::ZERO;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// One second of one shard.
#[derive(Debug, Clone)]
struct Bucket {
    ok: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// One second of one region: answers, and the errors by code (what a fault shows as).
#[derive(Debug, Clone, Default)]
struct RegionBucket {
    ok: u64,
    errors: BTreeMap<String, u64>,
}

/// Everything measured after warm-up.
#[derive(Debug)]
pub struct Recorder {
    series: BTreeMap<Key, Series>,
    /// `timeline[shard][second]`: what completed in that second of the measured window.
    timeline: BTreeMap<Arc<str>, Vec<Bucket>>,
    /// `regions[region][second]`: the same by region, with error codes.
    regions: BTreeMap<Arc<str>, Vec<RegionBucket>>,
    /// Requests sent during warm-up, not counted anywhere else.
    pub warmup_requests: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self { series: BTreeMap::new(), timeline: BTreeMap::new(), regions: BTreeMap::new(), warmup_requests: 0 }
    }

    /// Records a request that completed `at` into the measured window (0 = its start) after
    /// `latency`.
    pub fn record(&mut self, key: &Key, at: Duration, latency: Duration, outcome: &Outcome) {
        match self.series.get_mut(key) {
            Some(s) => s.record(latency, outcome),
            None => {
                let mut s = Series::new(3);
                s.record(latency, outcome);
                self.series.insert(key.clone(), s);
            }
        }
        let second = usize::try_from(at.as_secs()).unwrap_or(usize::MAX).min(86_400);
        let buckets = self.timeline.entry(key.shard.clone()).or_default();
        while buckets.len() <= second {
            // Two digits are enough for a per-second p99 on a chart, at a fraction of the size.
            buckets.push(Bucket { ok: 0, errors: 0, latency: Series::new(2).latency });
        }
        let b = &mut buckets[second];
        b.latency.saturating_record(micros(latency));
        match outcome {
            Ok(()) => b.ok += 1,
            Err(_) => b.errors += 1,
        }
        let seconds = self.regions.entry(key.region.clone()).or_default();
        if seconds.len() <= second {
            seconds.resize_with(second + 1, RegionBucket::default);
        }
        let r = &mut seconds[second];
        match outcome {
            Ok(()) => r.ok += 1,
            Err(code) => *r.errors.entry(code.clone()).or_default() += 1,
        }
    }

    /// The per-second answers of every region, with error codes: the chaos report.
    pub fn region_timeline(&self) -> Vec<RegionPoint> {
        let mut out = Vec::new();
        for (region, seconds) in &self.regions {
            for (second, b) in seconds.iter().enumerate() {
                let (ok, errors) = (b.ok, b.errors.clone());
                out.push(RegionPoint { region: region.to_string(), second: second as u64, ok, errors });
            }
        }
        out
    }

    pub fn series(&self) -> &BTreeMap<Key, Series> {
        &self.series
    }

    /// Requests of every shard completed in `second`, and their p99 in ms: the live line.
    pub fn second(&self, second: usize) -> (u64, f64) {
        let mut h = Series::new(2).latency;
        let mut n = 0;
        for buckets in self.timeline.values() {
            if let Some(b) = buckets.get(second) {
                n += b.ok + b.errors;
                let _ = h.add(&b.latency);
            }
        }
        (n, Percentiles::of(&h).p99_ms)
    }

    /// The per-second points of every shard, for the JSON and the chart.
    pub fn timeline(&self) -> Vec<Point> {
        let mut out = Vec::new();
        for (shard, buckets) in &self.timeline {
            for (second, b) in buckets.iter().enumerate() {
                out.push(Point {
                    shard: shard.to_string(),
                    second: second as u64,
                    ok: b.ok,
                    errors: b.errors,
                    p99_ms: Percentiles::of(&b.latency).p99_ms,
                });
            }
        }
        out
    }

    /// The table: a row per (operation, shard), then per region and operation, then per
    /// operation over everything. `window` is the measured time that throughputs divide by.
    pub fn rows(&self, window: Duration) -> Vec<Row> {
        let secs = window.as_secs_f64().max(1e-9);
        let mut out = Vec::new();
        let mut by_region: BTreeMap<(&'static str, Arc<str>), Series> = BTreeMap::new();
        let mut by_op: BTreeMap<&'static str, Series> = BTreeMap::new();
        for (key, s) in &self.series {
            out.push(Row::new(key.op, &key.region, &key.shard, s, secs));
            by_region.entry((key.op, key.region.clone())).or_insert_with(|| Series::new(3)).merge(s);
            by_op.entry(key.op).or_insert_with(|| Series::new(3)).merge(s);
        }
        let shards_per_region =
            |op: &str, region: &Arc<str>| self.series.keys().filter(|k| k.op == op && &k.region == region).count();
        for ((op, region), s) in &by_region {
            // A region served by one shard already has its row.
            if shards_per_region(op, region) > 1 {
                out.push(Row::new(op, region, "*", s, secs));
            }
        }
        let regions_per_op = |op: &str| by_region.keys().filter(|(o, _)| *o == op).count();
        for (op, s) in &by_op {
            if regions_per_op(op) > 1 {
                out.push(Row::new(op, "*", "*", s, secs));
            }
        }
        if by_op.len() > 1 {
            let mut all = Series::new(3);
            by_op.values().for_each(|s| all.merge(s));
            out.push(Row::new("all", "*", "*", &all, secs));
        }
        out
    }
}

/// One line of the results table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub op: String,
    pub region: String,
    pub shard: String,
    pub requests: u64,
    pub ok: u64,
    /// Error answers by `extensions.code` (or `HTTP_<status>`, `TIMEOUT`, `TRANSPORT`).
    pub errors: BTreeMap<String, u64>,
    /// Successful requests per second of the measured window.
    pub ok_per_s: f64,
    pub requests_per_s: f64,
    #[serde(flatten)]
    pub latency: Percentiles,
}

impl Row {
    fn new(op: &str, region: &str, shard: &str, s: &Series, secs: f64) -> Self {
        Self {
            op: op.to_owned(),
            region: region.to_owned(),
            shard: shard.to_owned(),
            requests: s.requests(),
            ok: s.ok,
            errors: s.errors.clone(),
            ok_per_s: s.ok as f64 / secs,
            requests_per_s: s.requests() as f64 / secs,
            latency: Percentiles::of(&s.latency),
        }
    }
}

/// One second of one region in the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct RegionPoint {
    pub region: String,
    pub second: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
}

/// One second of one shard in the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub shard: String,
    pub second: u64,
    pub ok: u64,
    pub errors: u64,
    pub p99_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(op: &'static str, region: &str, shard: &str) -> Key {
        Key { op, region: region.into(), shard: shard.into() }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut s = Series::new(3);
        // 1..=1000 ms, once each.
        for ms in 1..=1000 {
            s.record(Duration::from_millis(ms), &Ok(()));
        }
        let p = Percentiles::of(&s.latency);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(p.p50_ms, 500.0), "{p:?}");
        assert!(close(p.p90_ms, 900.0), "{p:?}");
        assert!(close(p.p99_ms, 990.0), "{p:?}");
        assert!(close(p.p999_ms, 999.0), "{p:?}");
        assert!(close(p.max_ms, 1000.0), "{p:?}");
        assert!(close(p.mean_ms, 500.5), "{p:?}");
        assert_eq!(Percentiles::of(&Series::new(3).latency).max_ms, 0.0);
    }

    #[test]
    fn a_tail_shows_in_p99_not_p50() {
        let mut s = Series::new(3);
        for _ in 0..985 {
            s.record(Duration::from_millis(2), &Ok(()));
        }
        for _ in 0..15 {
            s.record(Duration::from_millis(40), &Ok(()));
        }
        let p = Percentiles::of(&s.latency);
        assert!((p.p50_ms - 2.0).abs() < 0.01 && (p.p99_ms - 40.0).abs() < 0.05, "{p:?}");
    }

    #[test]
    fn sub_microsecond_and_huge_latencies_are_clamped_not_lost() {
        let mut s = Series::new(3);
        s.record(Duration::from_nanos(10), &Ok(()));
        s.record(Duration::from_secs(3600), &Ok(()));
        assert_eq!(s.latency.len(), 2);
        assert!(Percentiles::of(&s.latency).max_ms >= 119_000.0);
    }

    #[test]
    fn rows_per_shard_then_region_then_operation() {
        let mut r = Recorder::new();
        let at = Duration::from_millis(1500);
        for _ in 0..7 {
            r.record(&key("createOrder", "NA", "na-1"), at, Duration::from_millis(3), &Ok(()));
        }
        r.record(&key("createOrder", "NA", "na-2"), at, Duration::from_millis(3), &Ok(()));
        r.record(&key("createOrder", "SA", "sa-1"), at, Duration::from_millis(5), &Err("SOLD_OUT".into()));
        r.record(&key("createOrder", "SA", "sa-1"), at, Duration::from_millis(5), &Ok(()));
        r.record(&key("events", "NA", "*"), at, Duration::from_millis(1), &Ok(()));
        let rows = r.rows(Duration::from_secs(2));
        let names: Vec<_> = rows.iter().map(|r| format!("{} {} {}", r.op, r.region, r.shard)).collect();
        assert_eq!(
            names,
            [
                "createOrder NA na-1",
                "createOrder NA na-2",
                "createOrder SA sa-1",
                "events NA *",
                "createOrder NA *",
                "createOrder * *",
                "all * *"
            ]
        );
        let sa = &rows[2];
        assert_eq!((sa.requests, sa.ok, sa.errors.get("SOLD_OUT")), (2, 1, Some(&1)));
        assert!((sa.ok_per_s - 0.5).abs() < 1e-9);
        let total = &rows[5];
        assert_eq!((total.requests, total.ok), (10, 9));
        assert_eq!(rows[6].requests, 11);
    }

    #[test]
    fn the_timeline_counts_each_second_per_shard() {
        let mut r = Recorder::new();
        let k = key("createOrder", "NA", "na-1");
        r.record(&k, Duration::from_millis(100), Duration::from_millis(2), &Ok(()));
        r.record(&k, Duration::from_millis(900), Duration::from_millis(4), &Err("TIMEOUT".into()));
        r.record(&k, Duration::from_millis(2100), Duration::from_millis(8), &Ok(()));
        let points = r.timeline();
        let counts: Vec<_> = points.iter().map(|p| (p.second, p.ok, p.errors)).collect();
        assert_eq!(counts, [(0, 1, 1), (1, 0, 0), (2, 1, 0)]);
        assert_eq!(r.second(0).0, 2);
        assert!((r.second(2).1 - 8.0).abs() < 0.1);
    }
}
