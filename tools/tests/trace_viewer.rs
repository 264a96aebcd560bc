//! The trace viewer over the real protocols: the viewer started in-process on port 0 (both
//! listeners), spans sent by the real OpenTelemetry SDK and OTLP/gRPC exporter (and by a raw
//! tonic client where a test needs exact control of ids), then read back through the JSON API
//! and the HTML pages. Its own binary: unlike `audit.rs` it needs no stack.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

use opentelemetry::trace::{Link, Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as OtlpKeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tools::traces::{Application, Settings};

/// A viewer running in this process, stopped on drop.
struct Viewer {
    /// `http://127.0.0.1:PORT`: pages, JSON, OTLP/HTTP, ops.
    http: String,
    /// `http://127.0.0.1:PORT`: the OTLP/gRPC endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` names it.
    otlp: String,
    client: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Viewer {
    async fn spawn(max_traces: usize, max_spans: usize) -> Self {
        let settings = Settings {
            otlp_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            max_traces,
            max_spans,
        };
        let app = Application::build(settings).await.unwrap();
        let (http, otlp) =
            (format!("http://127.0.0.1:{}", app.port()), format!("http://127.0.0.1:{}", app.otlp_port()));
        let stop = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(stop.clone()));
        Self { http, otlp, client: reqwest::Client::new(), stop }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let res = self.client.get(format!("{}{path}", self.http)).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// A tracer provider of `service` exporting here with the real OTLP/gRPC exporter.
    fn provider(&self, service: &'static str) -> SdkTracerProvider {
        let exporter =
            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(self.otlp.clone()).build().unwrap();
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service).build())
            .build()
    }

    async fn export(&self, request: ExportTraceServiceRequest) -> Answer {
        let mut client = TraceServiceClient::connect(self.otlp.clone()).await.unwrap();
        let answer = client.export(request).await.unwrap().into_inner();
        Answer {
            rejected: answer.partial_success.as_ref().map_or(0, |p| p.rejected_spans),
            message: answer.partial_success.map(|p| p.error_message).unwrap_or_default(),
        }
    }
}

/// What an export's `partial_success` said.
#[derive(Debug)]
struct Answer {
    rejected: i64,
    message: String,
}

/// Flushes and shuts the providers down off the runtime's threads: both block until the batch
/// thread has exported, and the exporter's connection runs on this runtime.
async fn flush(providers: Vec<SdkTracerProvider>) {
    tokio::task::spawn_blocking(move || {
        for p in &providers {
            p.force_flush().unwrap();
            p.shutdown().unwrap();
        }
    })
    .await
    .unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A raw OTLP request: one resource `service` with these spans.
fn request(service: &str, spans: Vec<otlp::Span>) -> ExportTraceServiceRequest {
    let name = OtlpKeyValue {
        key: "service.name".into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.into())) }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![otlp::ResourceSpans {
            resource: Some(OtlpResource { attributes: vec![name], ..OtlpResource::default() }),
            scope_spans: vec![otlp::ScopeSpans { spans, ..otlp::ScopeSpans::default() }],
            schema_url: String::new(),
        }],
    }
}

/// A raw span of trace `[t; 16]`, id `[s; 8]`, parent `[p; 8]`.
fn raw_span(t: u8, s: u8, parent: Option<u8>, name: &str, start: u64, end: u64) -> otlp::Span {
    otlp::Span {
        trace_id: vec![t; 16],
        span_id: vec![s; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..otlp::Span::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_trace_across_two_services_shows_its_tree_links_and_attributes() {
    let viewer = Viewer::spawn(100, 1000).await;
    let (gateway, orders) = (viewer.provider("gateway"), viewer.provider("orders"));
    let (gw, or) = (gateway.tracer("test"), orders.tracer("test"));

    let root = gw
        .span_builder("createOrder")
        .with_kind(SpanKind::Server)
        .with_attributes([KeyValue::new("correlation_id", "corr-42")])
        .start(&gw);
    let cx = Context::current_with_span(root);
    let root_ctx = cx.span().span_context().clone();
    let mut call = gw.span_builder("POST /api/v1/orders").with_kind(SpanKind::Client).start_with_context(&gw, &cx);
    call.set_attribute(KeyValue::new("http.response.status_code", 201));
    let call_cx = cx.with_span(call);
    let tx = or
        .span_builder("shard transaction")
        .with_attributes([KeyValue::new("db.shard", "na-1"), KeyValue::new("region", "na")])
        .start_with_context(&or, &call_cx);
    drop(tx);
    drop(call_cx);
    drop(cx);
    // The consumer's own trace, linked to the request that produced its message.
    let consume = or
        .span_builder("apply orders.events")
        .with_kind(SpanKind::Consumer)
        .with_links(vec![Link::with_context(root_ctx.clone())])
        .start(&or);
    let consume_trace = consume.span_context().trace_id().to_string();
    drop(consume);
    flush(vec![gateway, orders]).await;

    let trace_id = root_ctx.trace_id().to_string();
    let list = viewer.json("/api/traces").await;
    let summary = list["traces"].as_array().unwrap().iter().find(|t| t["traceId"] == trace_id.as_str()).unwrap();
    assert_eq!(summary["rootName"], "createOrder");
    assert_eq!(summary["rootService"], "gateway");
    assert_eq!(summary["services"], serde_json::json!(["gateway", "orders"]));
    assert_eq!(summary["spanCount"], 3);

    let detail = viewer.json(&format!("/api/traces/{trace_id}")).await;
    let spans = detail["spans"].as_array().unwrap();
    let by_name = |n: &str| spans.iter().find(|s| s["name"] == n).unwrap_or_else(|| panic!("no span {n}: {detail}"));
    let (root, call, tx) = (by_name("createOrder"), by_name("POST /api/v1/orders"), by_name("shard transaction"));
    assert!(root["parentSpanId"].is_null());
    assert_eq!(call["parentSpanId"], root["spanId"]);
    assert_eq!(tx["parentSpanId"], call["spanId"]);
    assert_eq!((tx["service"].as_str(), call["kind"].as_str()), (Some("orders"), Some("client")));
    assert_eq!(tx["attributes"]["db.shard"], "na-1");
    assert_eq!(call["attributes"]["http.response.status_code"], "201");

    let consumer = viewer.json(&format!("/api/traces/{consume_trace}")).await;
    assert_eq!(consumer["spans"][0]["links"][0]["traceId"], trace_id.as_str());

    // The waterfall names the spans and the services, in tree order, indented by depth.
    let (status, page) = viewer.get(&format!("/trace/{trace_id}")).await;
    assert_eq!(status, 200);
    let at = |needle: &str| page.find(needle).unwrap_or_else(|| panic!("page lacks {needle}"));
    assert!(at("<b>createOrder</b>") < at("<b>POST /api/v1/orders</b>"));
    assert!(at("<b>POST /api/v1/orders</b>") < at("<b>shard transaction</b>"));
    assert!(page.contains(">gateway</span>") && page.contains(">orders</span>"));
    assert!(page.contains("db.shard=na-1"));
    assert!(page.contains("padding-left:36px\"><b>shard transaction</b>"), "depth 2 indents twice");
    // The consumer's page links back to the request's trace.
    let (_, consumer_page) = viewer.get(&format!("/trace/{consume_trace}")).await;
    assert!(consumer_page.contains(&format!("href=\"/trace/{trace_id}\"")));

    // The front page lists it, and finds it by its correlation id.
    let (_, index) = viewer.get("/").await;
    assert!(index.contains(&format!("href=\"/trace/{trace_id}\">createOrder</a>")));
    let found = viewer.json("/api/traces?attr=correlation_id%3Dcorr-42").await;
    assert_eq!(found["traces"].as_array().unwrap().len(), 1);
    assert_eq!(found["traces"][0]["traceId"], trace_id.as_str());
    let (_, by_value) = viewer.get("/?attr=corr-42").await;
    assert!(by_value.contains(&trace_id) && !by_value.contains(&consume_trace));
    let only_gateway = viewer.json("/api/traces?service=gateway").await;
    assert_eq!(only_gateway["traces"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn spans_whose_parent_is_missing_show_at_the_root_and_otlp_http_is_accepted() {
    let viewer = Viewer::spawn(100, 1000).await;
    let spans = vec![raw_span(7, 1, None, "root", 1_000, 9_000), raw_span(7, 2, Some(99), "orphan", 2_000, 3_000)];
    let res = viewer
        .client
        .post(format!("{}/v1/traces", viewer.http))
        .header("content-type", "application/x-protobuf")
        .body(request("projector", spans).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = hex(&[7; 16]);
    let (status, page) = viewer.get(&format!("/trace/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("padding-left:0px\"><b>orphan</b>"), "{page}");
    assert!(page.contains(&format!("parent <code>{}</code> not received", hex(&[99; 8]))));

    let res = viewer.client.post(format!("{}/v1/traces", viewer.http)).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 415);
}

#[tokio::test]
async fn the_bounds_hold_evicting_the_oldest_traces() {
    let viewer = Viewer::spawn(3, 5).await;
    for t in 1..=5u8 {
        let answer = viewer.export(request("orders", vec![raw_span(t, 1, None, &format!("t{t}"), 0, 10)])).await;
        assert_eq!(answer.rejected, 0);
    }
    let list = viewer.json("/api/traces").await;
    let mut names: Vec<&str> =
        list["traces"].as_array().unwrap().iter().map(|t| t["rootName"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["t3", "t4", "t5"]);
    assert_eq!(viewer.get(&format!("/api/traces/{}", hex(&[1; 16]))).await.0, 404);

    // Five spans at most: a trace of four leaves room for one other trace only.
    let four = (1..=4).map(|s| raw_span(9, s, None, "big", 0, 10)).collect();
    viewer.export(request("orders", four)).await;
    let list = viewer.json("/api/traces").await;
    let kept: u64 = list["traces"].as_array().unwrap().iter().map(|t| t["spanCount"].as_u64().unwrap()).sum();
    assert_eq!(kept, 5);
    assert_eq!(list["traces"].as_array().unwrap().len(), 2);

    // One trace never holds more than max_spans; the rest are refused and said so.
    let six = (1..=6).map(|s| raw_span(10, s, None, "huge", 0, 10)).collect();
    let answer = viewer.export(request("orders", six)).await;
    assert_eq!(answer.rejected, 1, "{}", answer.message);
    assert!(answer.message.contains("max_spans"));

    let (_, metrics) = viewer.get("/metrics").await;
    assert!(metrics.contains("trace_viewer_traces_evicted_total"), "{metrics}");
    assert!(metrics.contains("trace_viewer_spans_received_total"));
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_a_bad_span_is_refused_alone() {
    let viewer = Viewer::spawn(10, 100).await;
    let unknown = hex(&[5; 16]);
    let (status, body) = viewer.get(&format!("/api/traces/{unknown}")).await;
    assert_eq!(status, 404);
    assert!(body.contains("NOT_FOUND") && body.contains(&unknown), "{body}");
    let (status, page) = viewer.get(&format!("/trace/{unknown}")).await;
    assert_eq!(status, 404);
    assert!(page.contains("evicted"), "{page}");
    let (status, body) = viewer.get("/api/traces/not-a-trace-id").await;
    assert_eq!(status, 400);
    assert!(body.contains("trace_id") && body.contains("32 hexadecimal digits"), "{body}");
    assert_eq!(viewer.get("/trace/%C3%A9%C3%A9").await.0, 400);
    assert_eq!(viewer.get(&format!("/trace/{}", "0".repeat(32))).await.0, 400);
    assert_eq!(viewer.get("/api/traces?min_ms=soon").await.0, 400);
    assert_eq!(viewer.get("/api/traces?limit=0").await.0, 400);
    assert_eq!(viewer.get("/?min_ms=-1").await.0, 400);
    // An empty form field is no filter.
    assert_eq!(viewer.get("/?service=&min_ms=&attr=&limit=").await.0, 200);

    let mut bad = raw_span(3, 1, None, "bad", 0, 1);
    bad.span_id = vec![1; 3];
    let answer = viewer.export(request("orders", vec![bad, raw_span(3, 2, None, "good", 0, 1)])).await;
    assert_eq!(answer.rejected, 1);
    assert!(answer.message.contains("span_id"), "{}", answer.message);
    let detail = viewer.json(&format!("/api/traces/{}", hex(&[3; 16]))).await;
    assert_eq!(detail["spans"].as_array().unwrap().len(), 1);

    assert_eq!(viewer.get("/healthz").await.0, 200);
    let (status, ready) = viewer.get("/readyz").await;
    assert_eq!(status, 200);
    assert!(ready.contains("1 traces, 1 spans kept"), "{ready}");
}
