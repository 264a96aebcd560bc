//! The browser pages: `/` lists recent traces with filters, `/trace/{trace_id}` draws one as a
//! waterfall. Plain HTML rendered here, inline CSS, no script and no external asset, so the
//! pages work offline and in any browser; filters are a GET form, details are `<details>`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use platform::error::ApiError;
use platform::http::{Path, Query};

use super::api::{self, ListQuery};
use super::store::{Span, Store, TraceSummary, waterfall};

pub fn routes() -> Router<Arc<Store>> {
    Router::new().route("/", get(index)).route("/trace/{trace_id}", get(trace))
}

/// An error as a page: the status and the message, with a way back.
struct PageError(ApiError);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Validation { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = format!(
            "<h1>{} {}</h1><p class=err>{}</p><p><a href=\"/\">All traces</a></p>",
            status.as_u16(),
            esc(status.canonical_reason().unwrap_or("")),
            esc(&self.0.to_string())
        );
        (status, page("Trace viewer", &body)).into_response()
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

/// Text made safe for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text made safe for a URL's query value.
fn query_value(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A stable colour per service (FNV-1a of the name to a hue), the same on every page.
pub fn colour(service: &str) -> String {
    let hash = service.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("hsl({} 62% 40%)", hash % 360)
}

/// `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
pub fn duration(nanos: u64) -> String {
    let n = nanos as f64;
    match nanos {
        0..1_000 => format!("{nanos} ns"),
        1_000..1_000_000 => format!("{:.1} µs", n / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", n / 1e6),
        _ => format!("{:.2} s", n / 1e9),
    }
}

fn time(unix_nano: u64) -> String {
    let at = chrono::DateTime::from_timestamp_nanos(i64::try_from(unix_nano).unwrap_or(i64::MAX));
    at.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

fn service_chip(service: &str) -> String {
    format!("<span class=svc style=\"background:{}\">{}</span>", colour(service), esc(service))
}

const CSS: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
header{background:#1d232b;color:#fff;padding:10px 20px}header a{color:#fff;text-decoration:none;font-weight:600}
header .stats{float:right;opacity:.75;font-size:13px}
main{padding:14px 20px}h1{font-size:19px;margin:4px 0 10px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:5px 8px;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
th{font-size:12px;text-transform:uppercase;color:#5b6571;background:#eef0f3}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.svc{color:#fff;border-radius:3px;padding:1px 6px;font-size:12px;margin-right:3px;white-space:nowrap}
.mono,code{font-family:ui-monospace,monospace;font-size:12px}
form{margin:0 0 12px;display:flex;gap:8px;flex-wrap:wrap;align-items:end}
label{font-size:12px;color:#5b6571;display:flex;flex-direction:column}
input,select,button{font:inherit;padding:3px 6px}
.err{color:#b3261e;font-weight:600}.muted{color:#6b7480}
.meta{margin:0 0 12px;color:#3b444f}
td.name{min-width:260px}
td.bar{width:45%;min-width:200px}
.track{position:relative;height:14px;background:#eef0f3;border-radius:2px}
.fill{position:absolute;top:0;height:14px;border-radius:2px;min-width:2px}
.kv{display:inline-block;text-decoration:none;font-family:ui-monospace,monospace;font-size:11.5px;color:#3b444f;background:#f0f2f5;border-radius:3px;padding:0 4px;margin:2px 3px 0 0;word-break:break-all}
.kind{font-size:11px;color:#6b7480;margin-left:4px}
details summary{cursor:pointer;color:#5b6571;font-size:12px}
.ticks{display:flex;justify-content:space-between;font-size:11px;color:#6b7480}
";

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>{}</title><style>{CSS}</style></head><body><header><a href=\"/\">Ticket Hub · traces</a></header>\
         <main>{body}</main></body></html>",
        esc(title)
    ))
}

async fn index(State(store): State<Arc<Store>>, Query(query): Query<ListQuery>) -> Result<Html<String>, PageError> {
    let filter = query.filter()?;
    let traces = store.list(&filter);
    let stats = store.stats();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Recent traces</h1><p class=meta>{} traces, {} spans kept (at most {} and {}); {} traces evicted.</p>",
        stats.traces_kept,
        stats.spans_kept,
        store.limits().max_traces,
        store.limits().max_spans,
        stats.traces_evicted
    );
    body.push_str(&filter_form(&query, &store.services()));
    if traces.is_empty() {
        body.push_str(
            "<p class=muted>No trace matches. Services send OTLP over gRPC to this viewer's OTLP port \
             (<code>OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317</code> by default), or OTLP/HTTP \
             protobuf to <code>/v1/traces</code> here.</p>",
        );
    } else {
        body.push_str(
            "<table><tr><th>Start</th><th>Root span</th><th>Services</th><th>Spans</th><th>Errors</th>\
             <th>Duration</th><th>Trace id</th></tr>",
        );
        for t in &traces {
            body.push_str(&trace_row(t));
        }
        body.push_str("</table>");
    }
    Ok(page("Traces", &body))
}

fn filter_form(query: &ListQuery, services: &[String]) -> String {
    let current = query.service.as_deref().unwrap_or("");
    let mut options = String::from("<option value=\"\">any</option>");
    for s in services {
        let selected = if s == current { " selected" } else { "" };
        let _ = write!(options, "<option{selected}>{}</option>", esc(s));
    }
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    format!(
        "<form method=get action=\"/\"><label>Service<select name=service>{options}</select></label>\
         <label>Min duration (ms)<input name=min_ms size=8 value=\"{}\"></label>\
         <label>Attribute (key=value, or a value)<input name=attr size=40 value=\"{}\" \
         placeholder=\"correlation_id=…\"></label><label>Limit<input name=limit size=5 value=\"{}\"></label>\
         <button>Filter</button> <a href=\"/\">clear</a></form>",
        value(&query.min_ms),
        value(&query.attr),
        value(&query.limit),
    )
}

fn trace_row(t: &TraceSummary) -> String {
    let services: String = t.services.iter().map(|s| service_chip(s)).collect();
    let errors = if t.error_count > 0 { format!("<span class=err>{}</span>", t.error_count) } else { "0".into() };
    format!(
        "<tr><td class=num>{}</td><td>{} <a href=\"/trace/{id}\">{}</a></td><td>{services}</td>\
         <td class=num>{}</td><td class=num>{errors}</td><td class=num>{}</td>\
         <td><a class=mono href=\"/trace/{id}\">{id}</a></td></tr>",
        time(t.start_unix_nano),
        service_chip(&t.root_service),
        esc(&t.root_name),
        t.span_count,
        duration(t.duration_nanos),
        id = t.trace_id,
    )
}

async fn trace(State(store): State<Arc<Store>>, Path(id): Path<String>) -> Result<Html<String>, PageError> {
    let id = api::trace_id(&id)?;
    let (summary, spans) = store.get(id).ok_or_else(|| api::not_found(id))?;
    let mut body = String::new();
    let services: String = summary.services.iter().map(|s| service_chip(s)).collect();
    let _ = write!(
        body,
        "<h1>{} {}</h1><p class=meta>Trace <code>{}</code> · started {} · {} · {} spans · {} errors · \
         <a href=\"/api/traces/{}\">JSON</a></p><p class=meta>{services}</p>",
        service_chip(&summary.root_service),
        esc(&summary.root_name),
        summary.trace_id,
        time(summary.start_unix_nano),
        duration(summary.duration_nanos),
        summary.span_count,
        summary.error_count,
        summary.trace_id,
    );
    let total = summary.duration_nanos.max(1);
    let ticks: String = (0..=4).map(|q| format!("<span>{}</span>", duration(total * q / 4))).collect();
    let _ = write!(
        body,
        "<table><tr><th>Service</th><th>Span</th><th>Duration</th><th><div class=ticks>{ticks}</div></th></tr>"
    );
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id).collect();
    for (depth, span) in waterfall(&spans) {
        body.push_str(&span_row(depth, span, summary.start_unix_nano, total, &ids));
    }
    body.push_str("</table>");
    Ok(page(&format!("{} · trace {}", summary.root_name, summary.trace_id), &body))
}

fn span_row(
    depth: usize,
    span: &Span,
    trace_start: u64,
    total: u64,
    ids: &std::collections::HashSet<super::store::SpanId>,
) -> String {
    let pct = |n: u64| n as f64 * 100.0 / total as f64;
    let left = pct(span.start_unix_nano.saturating_sub(trace_start)).min(100.0);
    let width = pct(span.duration_nanos()).clamp(0.0, 100.0 - left);
    let mut detail = String::new();
    if let Some(parent) = span.parent_span_id.filter(|p| !ids.contains(p)) {
        let _ = write!(detail, "<span class=muted>parent <code>{parent}</code> not received</span> ");
    }
    if span.status.is_error() {
        let _ = write!(detail, "<span class=err>error: {}</span> ", esc(&span.status.message));
    }
    // Each attribute links to the traces sharing it: a correlation id finds its other traces.
    // Where the span was made (code.*, thread.*, target: tracing-opentelemetry adds them to
    // every span) goes under "more", so a whole order's trace fits on one screen.
    let mut place = String::new();
    for (k, v) in &span.attributes {
        let line = if is_placement(k) { &mut place } else { &mut detail };
        let _ = write!(line, "<a class=kv href=\"{}\">{}={}</a>", esc(&attr_link(k, v)), esc(k), esc(v));
    }
    for link in &span.links {
        let _ = write!(
            detail,
            "<span class=kv>link → <a href=\"/trace/{t}\">{t}</a> span {}</span>",
            link.span_id,
            t = link.trace_id
        );
    }
    let mut more = place;
    for e in &span.events {
        let _ = write!(
            more,
            "<span class=kv>event +{} {}</span>",
            duration(e.time_unix_nano.saturating_sub(span.start_unix_nano)),
            esc(&e.name)
        );
        for (k, v) in &e.attributes {
            let _ = write!(more, "<span class=kv>{}={}</span>", esc(k), esc(v));
        }
    }
    let _ = write!(more, "<span class=kv>span_id={}</span>", span.span_id);
    if !span.scope.is_empty() {
        let _ = write!(more, "<span class=kv>scope={}</span>", esc(&span.scope));
    }
    for (k, v) in &span.resource {
        let _ = write!(more, "<span class=kv>resource {}={}</span>", esc(k), esc(v));
    }
    format!(
        "<tr><td>{}</td><td class=name><div style=\"padding-left:{}px\"><b>{}</b><span class=kind>{}</span>\
         <div>{detail}</div><details><summary>more</summary>{more}</details></div></td>\
         <td class=num>{}</td><td class=bar><div class=track><div class=fill \
         style=\"left:{left:.3}%;width:{width:.3}%;background:{}\"></div></div></td></tr>",
        service_chip(&span.service),
        depth * 18,
        esc(&span.name),
        span.kind,
        duration(span.duration_nanos()),
        colour(&span.service),
    )
}

/// The front page listing the traces with attribute `key=value`.
pub fn attr_link(key: &str, value: &str) -> String {
    format!("/?attr={}", query_value(&format!("{key}={value}")))
}

/// Attributes that say where in the code a span was made rather than what it did.
fn is_placement(key: &str) -> bool {
    key.starts_with("code.") || key.starts_with("thread.") || key == "target"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_durations_read_well() {
        assert_eq!(esc("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
        assert_eq!(duration(850), "850 ns");
        assert_eq!(duration(12_345), "12.3 µs");
        assert_eq!(duration(4_560_000), "4.56 ms");
        assert_eq!(duration(1_200_000_000), "1.20 s");
        assert_eq!(colour("orders"), colour("orders"));
        assert_eq!(attr_link("correlation_id", "a b&c"), "/?attr=correlation_id%3Da%20b%26c");
        assert!(is_placement("code.file.path") && is_placement("thread.id") && is_placement("target"));
        assert!(!is_placement("shard") && !is_placement("correlation_id") && !is_placement("targets"));
    }
}
