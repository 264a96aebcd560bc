//! The spans in memory, grouped by trace, bounded, and the questions the pages ask of them.
//!
//! Everything here is plain data and pure functions under one mutex: the receiver
//! ([`super::receiver`]) turns OTLP into [`Span`]s at the door, the pages ([`super::ui`],
//! [`super::api`]) read [`TraceSummary`]s and [`Span`]s back. No IO, so the bounds and the
//! waterfall order are unit-tested here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use serde::{Serialize, Serializer};

/// A W3C / OTLP trace id: 16 bytes, not all zero. Shown and parsed as 32 lowercase hex digits,
/// the form every OpenTelemetry tool prints (and `traceparent` carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// A span id: 8 bytes, not all zero; 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

/// Why a text or a byte string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be {0} hexadecimal digits")]
    Length(usize),
    #[error("must be hexadecimal digits only")]
    NotHex,
    #[error("must not be all zeros (the invalid id)")]
    Zero,
}

fn from_bytes<const N: usize>(bytes: &[u8]) -> Result<[u8; N], IdError> {
    let id: [u8; N] = bytes.try_into().map_err(|_| IdError::Length(N * 2))?;
    if id.iter().all(|b| *b == 0) { Err(IdError::Zero) } else { Ok(id) }
}

fn from_hex<const N: usize>(text: &str) -> Result<[u8; N], IdError> {
    if text.len() != N * 2 {
        return Err(IdError::Length(N * 2));
    }
    let mut id = [0u8; N];
    for (i, byte) in id.iter_mut().enumerate() {
        let pair = text.get(i * 2..i * 2 + 2).ok_or(IdError::NotHex)?;
        if !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IdError::NotHex);
        }
        *byte = u8::from_str_radix(pair, 16).map_err(|_| IdError::NotHex)?;
    }
    from_bytes(&id)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

impl TraceId {
    /// The id of an OTLP message's `trace_id` field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
        from_bytes(bytes).map(Self)
    }

    /// 32 hex digits, either case (a URL's path segment, a query parameter).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        from_hex(text).map(Self)
    }
}

impl SpanId {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
        from_bytes(bytes).map(Self)
    }

    pub fn parse(text: &str) -> Result<Self, IdError> {
        from_hex(text).map(Self)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for SpanId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Attributes as text, by key: what the pages show (`key=value`) and what `attr=` matches.
/// Typed OTLP values are rendered once at the door ([`super::receiver`]).
pub type Attributes = BTreeMap<String, String>;

/// One received span, as the viewer keeps it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span. A parent id that names no span of the trace (not received, or
    /// evicted) is kept as sent; the waterfall shows such a span at the root level.
    pub parent_span_id: Option<SpanId>,
    pub name: String,
    /// The resource's `service.name`: what the pages colour and filter by.
    pub service: String,
    /// `server`, `client`, `producer`, `consumer`, `internal` or `unspecified`.
    pub kind: &'static str,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Attributes,
    /// The resource's other attributes (host, process, SDK), shared by the spans it sent.
    pub resource: Attributes,
    /// The instrumentation scope (library) that made the span.
    pub scope: String,
    pub links: Vec<SpanLink>,
    pub events: Vec<SpanEvent>,
    pub status: SpanStatus,
}

impl Span {
    /// End minus start; zero for a span whose clock went backwards.
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    fn matches(&self, attr: &AttrFilter) -> bool {
        let hit = |attrs: &Attributes| match &attr.key {
            Some(key) => attrs.get(key).is_some_and(|v| *v == attr.value),
            None => attrs.values().any(|v| *v == attr.value),
        };
        hit(&self.attributes) || hit(&self.resource)
    }
}

/// A link to a span of another (or the same) trace: how a consumer's span points at the
/// request that produced the message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nano: u64,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpanStatus {
    /// `unset`, `ok` or `error`.
    pub code: &'static str,
    pub message: String,
}

impl SpanStatus {
    pub fn is_error(&self) -> bool {
        self.code == "error"
    }
}

/// A trace as the list shows it: one line of the front page, one object of `/api/traces`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    pub trace_id: TraceId,
    /// The earliest start of its spans.
    pub start_unix_nano: u64,
    /// From the earliest start to the latest end.
    pub duration_nanos: u64,
    /// The root span's name and service: the earliest span without a parent in the trace.
    pub root_name: String,
    pub root_service: String,
    /// Every service with a span in the trace, sorted.
    pub services: Vec<String>,
    pub span_count: usize,
    pub error_count: usize,
}

impl TraceSummary {
    fn of(id: TraceId, spans: &[Span]) -> Self {
        let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
        let ids: HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
        let is_root = |s: &&Span| s.parent_span_id.is_none_or(|p| !ids.contains(&p));
        let root = spans
            .iter()
            .filter(is_root)
            .min_by_key(|s| s.start_unix_nano)
            .or_else(|| spans.iter().min_by_key(|s| s.start_unix_nano));
        let mut services: Vec<String> = spans.iter().map(|s| s.service.clone()).collect();
        services.sort();
        services.dedup();
        Self {
            trace_id: id,
            start_unix_nano: start,
            duration_nanos: end.saturating_sub(start),
            root_name: root.map(|s| s.name.clone()).unwrap_or_default(),
            root_service: root.map(|s| s.service.clone()).unwrap_or_default(),
            services,
            span_count: spans.len(),
            error_count: spans.iter().filter(|s| s.status.is_error()).count(),
        }
    }
}

/// A span attribute to look for: `key=value`, or a bare value matching any key (how a
/// correlation id is found without knowing which attribute carries it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrFilter {
    pub key: Option<String>,
    pub value: String,
}

impl AttrFilter {
    /// `key=value` or `value`; empty text is no filter.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        Some(match text.split_once('=') {
            Some((key, value)) if !key.is_empty() => Self { key: Some(key.to_owned()), value: value.to_owned() },
            _ => Self { key: None, value: text.trim_start_matches('=').to_owned() },
        })
    }
}

/// Which traces the list shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only traces with a span of this service.
    pub service: Option<String>,
    /// Only traces at least this long, in nanoseconds.
    pub min_duration_nanos: Option<u64>,
    /// Only traces with a span carrying this attribute.
    pub attr: Option<AttrFilter>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// The bounds of the store: past either, the least recently updated traces go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_traces: usize,
    pub max_spans: usize,
}

/// Counters since start, for `/metrics` and the front page.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub spans_received: u64,
    /// Spans refused at the door: a trace already holding `max_spans` spans.
    pub spans_dropped: u64,
    pub traces_evicted: u64,
    pub spans_evicted: u64,
    pub traces_kept: usize,
    pub spans_kept: usize,
}

/// What one export did to the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inserted {
    pub accepted: usize,
    pub dropped: usize,
}

struct Trace {
    spans: Vec<Span>,
    /// Position of each span in `spans`, so a span sent twice (an exporter's retry) replaces
    /// the first copy instead of appearing twice.
    index: HashMap<SpanId, usize>,
    /// The update sequence number under which `Inner::by_update` holds this trace.
    updated: u64,
}

#[derive(Default)]
struct Inner {
    traces: HashMap<TraceId, Trace>,
    /// Traces by their last update, oldest first: the eviction order. By update rather than
    /// arrival so a trace still growing (the relay publishes after the request ended, consumers
    /// later still) is not evicted for being old while its newest spans arrive.
    by_update: BTreeMap<u64, TraceId>,
    seq: u64,
    spans: usize,
    stats: Stats,
}

/// The viewer's memory: traces by id, bounded by [`Limits`].
pub struct Store {
    inner: Mutex<Inner>,
    limits: Limits,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Store {
    /// Limits of zero are raised to one: a store that keeps nothing would only confuse.
    pub fn new(limits: Limits) -> Self {
        let limits = Limits { max_traces: limits.max_traces.max(1), max_spans: limits.max_spans.max(1) };
        Self { inner: Mutex::new(Inner::default()), limits }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A poisoned lock means a panic while holding it; the data is plain and every update
    /// leaves it consistent, so the viewer goes on with it rather than failing every request.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds the spans of one export, then evicts the least recently updated traces until both
    /// bounds hold.
    pub fn insert(&self, spans: Vec<Span>) -> Inserted {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut done = Inserted::default();
        for span in spans {
            inner.stats.spans_received += 1;
            inner.seq += 1;
            let seq = inner.seq;
            let trace = inner.traces.entry(span.trace_id).or_insert_with(|| Trace {
                spans: Vec::new(),
                index: HashMap::new(),
                updated: seq,
            });
            if let Some(&at) = trace.index.get(&span.span_id) {
                trace.spans[at] = span;
            } else if trace.spans.len() >= self.limits.max_spans {
                inner.stats.spans_dropped += 1;
                done.dropped += 1;
                continue;
            } else {
                trace.index.insert(span.span_id, trace.spans.len());
                let id = span.trace_id;
                trace.spans.push(span);
                inner.spans += 1;
                // Fresh traces get `updated = seq` above, which no entry holds yet.
                inner.by_update.remove(&trace.updated);
                trace.updated = seq;
                inner.by_update.insert(seq, id);
            }
            done.accepted += 1;
        }
        // One trace holds at most `max_spans` spans and `max_traces >= 1`, so this ends.
        while inner.traces.len() > self.limits.max_traces
            || (inner.spans > self.limits.max_spans && inner.traces.len() > 1)
        {
            let Some((_, oldest)) = inner.by_update.pop_first() else { break };
            if let Some(trace) = inner.traces.remove(&oldest) {
                inner.spans -= trace.spans.len();
                inner.stats.traces_evicted += 1;
                inner.stats.spans_evicted += trace.spans.len() as u64;
            }
        }
        inner.stats.traces_kept = inner.traces.len();
        inner.stats.spans_kept = inner.spans;
        done
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats
    }

    /// Every service seen among the kept spans, sorted: the front page's filter choices.
    pub fn services(&self) -> Vec<String> {
        let inner = self.lock();
        let mut services: Vec<String> =
            inner.traces.values().flat_map(|t| t.spans.iter().map(|s| s.service.clone())).collect();
        services.sort();
        services.dedup();
        services
    }

    /// The traces `filter` selects, newest start first.
    pub fn list(&self, filter: &Filter) -> Vec<TraceSummary> {
        let inner = self.lock();
        let mut found: Vec<TraceSummary> = inner
            .traces
            .iter()
            .filter(|(_, t)| {
                filter.service.as_ref().is_none_or(|svc| t.spans.iter().any(|s| s.service == *svc))
                    && filter.attr.as_ref().is_none_or(|a| t.spans.iter().any(|s| s.matches(a)))
            })
            .map(|(id, t)| TraceSummary::of(*id, &t.spans))
            .filter(|s| filter.min_duration_nanos.is_none_or(|min| s.duration_nanos >= min))
            .collect();
        found.sort_by(|a, b| b.start_unix_nano.cmp(&a.start_unix_nano).then(a.trace_id.cmp(&b.trace_id)));
        found.truncate(filter.limit);
        found
    }

    /// One trace's summary and spans (in arrival order), or `None` when not kept.
    pub fn get(&self, id: TraceId) -> Option<(TraceSummary, Vec<Span>)> {
        let inner = self.lock();
        let trace = inner.traces.get(&id)?;
        Some((TraceSummary::of(id, &trace.spans), trace.spans.clone()))
    }
}

/// The waterfall order of a trace's spans: each span followed by its children (by start time),
/// with its depth. Spans whose parent is not in the trace are roots; spans caught in a parent
/// cycle (a malformed sender) come last at the root level, so every span is shown exactly once.
pub fn waterfall(spans: &[Span]) -> Vec<(usize, &Span)> {
    let ids: HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
    let mut children: HashMap<SpanId, Vec<&Span>> = HashMap::new();
    let mut roots: Vec<&Span> = Vec::new();
    for span in spans {
        match span.parent_span_id {
            Some(parent) if ids.contains(&parent) && parent != span.span_id => {
                children.entry(parent).or_default().push(span);
            }
            _ => roots.push(span),
        }
    }
    let by_start = |a: &&Span, b: &&Span| a.start_unix_nano.cmp(&b.start_unix_nano).then(a.span_id.cmp(&b.span_id));
    roots.sort_by(by_start);
    children.values_mut().for_each(|c| c.sort_by(by_start));

    let mut out = Vec::with_capacity(spans.len());
    let mut seen: HashSet<SpanId> = HashSet::new();
    for root in &roots {
        visit(root, &children, &mut out, &mut seen);
    }
    let mut rest: Vec<&Span> = spans.iter().filter(|s| !seen.contains(&s.span_id)).collect();
    rest.sort_by(by_start);
    for span in rest {
        visit(span, &children, &mut out, &mut seen);
    }
    out
}

/// Depth-first from `start` without recursion (a deep trace must not overflow the stack),
/// each span once.
fn visit<'a>(
    start: &'a Span,
    children: &HashMap<SpanId, Vec<&'a Span>>,
    out: &mut Vec<(usize, &'a Span)>,
    seen: &mut HashSet<SpanId>,
) {
    let mut stack: Vec<(usize, &Span)> = vec![(0, start)];
    while let Some((depth, span)) = stack.pop() {
        if !seen.insert(span.span_id) {
            continue;
        }
        out.push((depth, span));
        if let Some(kids) = children.get(&span.span_id) {
            stack.extend(kids.iter().rev().map(|k| (depth + 1, *k)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(n: u8) -> TraceId {
        TraceId([n; 16])
    }

    fn sid(n: u8) -> SpanId {
        SpanId([n; 8])
    }

    fn span(trace: u8, id: u8, parent: Option<u8>, start: u64, end: u64) -> Span {
        Span {
            trace_id: tid(trace),
            span_id: sid(id),
            parent_span_id: parent.map(sid),
            name: format!("span-{id}"),
            service: if id.is_multiple_of(2) { "orders".into() } else { "gateway".into() },
            kind: "internal",
            start_unix_nano: start,
            end_unix_nano: end,
            attributes: Attributes::from([("correlation_id".to_owned(), format!("c-{trace}"))]),
            resource: Attributes::new(),
            scope: String::new(),
            links: Vec::new(),
            events: Vec::new(),
            status: SpanStatus { code: "unset", message: String::new() },
        }
    }

    fn all() -> Filter {
        Filter { limit: usize::MAX, ..Filter::default() }
    }

    #[test]
    fn ids_parse_and_print_as_hex() {
        let id = TraceId::parse("0AF7651916CD43DD8448EB211C80319C").unwrap();
        assert_eq!(id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(TraceId::parse("abc"), Err(IdError::Length(32)));
        assert_eq!(TraceId::parse(&"g".repeat(32)), Err(IdError::NotHex));
        assert_eq!(TraceId::parse(&"0".repeat(32)), Err(IdError::Zero));
        // Multi-byte characters of the right byte length must not panic on slicing.
        assert_eq!(SpanId::parse("ééééééééé\u{0}").map(|_| ()), Err(IdError::Length(16)));
        assert_eq!(SpanId::parse("éééééééé"), Err(IdError::NotHex));
        assert_eq!(SpanId::from_bytes(&[1; 7]), Err(IdError::Length(16)));
    }

    #[test]
    fn spans_group_by_trace_and_a_resent_span_replaces_the_first() {
        let store = Store::new(Limits { max_traces: 10, max_spans: 100 });
        store.insert(vec![span(1, 1, None, 0, 100), span(1, 2, Some(1), 10, 50), span(2, 1, None, 5, 6)]);
        store.insert(vec![span(1, 2, Some(1), 10, 60)]);
        let (summary, spans) = store.get(tid(1)).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(summary.root_name, "span-1");
        assert_eq!(summary.services, vec!["gateway", "orders"]);
        assert_eq!(summary.duration_nanos, 100);
        assert_eq!(store.stats().spans_kept, 3);
        assert_eq!(store.list(&all()).len(), 2);
    }

    #[test]
    fn the_least_recently_updated_traces_go_first() {
        let store = Store::new(Limits { max_traces: 2, max_spans: 100 });
        store.insert(vec![span(1, 1, None, 0, 1)]);
        store.insert(vec![span(2, 1, None, 0, 1)]);
        // Trace 1 grows, so trace 2 is now the oldest update.
        store.insert(vec![span(1, 2, Some(1), 0, 1)]);
        store.insert(vec![span(3, 1, None, 0, 1)]);
        assert!(store.get(tid(1)).is_some());
        assert!(store.get(tid(2)).is_none());
        assert!(store.get(tid(3)).is_some());
        let stats = store.stats();
        assert_eq!((stats.traces_kept, stats.traces_evicted, stats.spans_evicted), (2, 1, 1));
    }

    #[test]
    fn the_span_bound_holds_and_one_trace_never_exceeds_it() {
        let store = Store::new(Limits { max_traces: 100, max_spans: 5 });
        for t in 1..=4 {
            store.insert(vec![span(t, 1, None, 0, 1), span(t, 2, Some(1), 0, 1)]);
            assert!(store.stats().spans_kept <= 5);
        }
        assert_eq!(store.list(&all()).len(), 2);
        let big: Vec<Span> = (1..=9).map(|i| span(9, i, None, 0, 1)).collect();
        let done = store.insert(big);
        assert_eq!(done, Inserted { accepted: 5, dropped: 4 });
        let stats = store.stats();
        assert_eq!((stats.traces_kept, stats.spans_kept, stats.spans_dropped), (1, 5, 4));
    }

    #[test]
    fn filters_by_service_duration_and_attribute() {
        let store = Store::new(Limits { max_traces: 10, max_spans: 100 });
        store.insert(vec![span(1, 1, None, 0, 1_000), span(1, 2, Some(1), 0, 10)]);
        store.insert(vec![span(2, 1, None, 100, 5_000_000)]);
        let pick = |f: Filter| store.list(&f).iter().map(|s| s.trace_id).collect::<Vec<_>>();
        assert_eq!(pick(Filter { service: Some("orders".into()), ..all() }), vec![tid(1)]);
        assert_eq!(pick(Filter { min_duration_nanos: Some(1_000_000), ..all() }), vec![tid(2)]);
        assert_eq!(pick(Filter { attr: AttrFilter::parse("correlation_id=c-1"), ..all() }), vec![tid(1)]);
        assert_eq!(pick(Filter { attr: AttrFilter::parse("c-2"), ..all() }), vec![tid(2)]);
        assert_eq!(pick(Filter { attr: AttrFilter::parse("other=c-2"), ..all() }), Vec::<TraceId>::new());
        // Newest start first, and the limit applies after sorting.
        assert_eq!(pick(Filter { limit: 1, ..all() }), vec![tid(2)]);
    }

    #[test]
    fn the_waterfall_nests_children_and_keeps_orphans_and_cycles_at_the_root() {
        let spans = vec![
            span(1, 3, Some(1), 20, 30),
            span(1, 1, None, 0, 100),
            span(1, 2, Some(1), 10, 15),
            span(1, 4, Some(2), 11, 12),
            span(1, 5, Some(42), 50, 60),
            // A cycle: 6 → 7 → 6.
            span(1, 6, Some(7), 70, 80),
            span(1, 7, Some(6), 71, 72),
        ];
        let order: Vec<(usize, String)> = waterfall(&spans).into_iter().map(|(d, s)| (d, s.name.clone())).collect();
        let expected =
            [(0, "span-1"), (1, "span-2"), (2, "span-4"), (1, "span-3"), (0, "span-5"), (0, "span-6"), (1, "span-7")];
        assert_eq!(order, expected.map(|(d, n)| (d, n.to_owned())).to_vec());
    }
}
