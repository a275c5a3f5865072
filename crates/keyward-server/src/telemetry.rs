//! OpenTelemetry traces: the `tracing` spans of API and gateway requests, the gateway's steps
//! (token check, resolution, each upstream attempt), store calls and group commits, exported
//! over OTLP/HTTP (protobuf) to `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) as
//! `OTEL_SERVICE_NAME` (default `keyward`); the exporter reads the other standard variables
//! itself (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`, `OTEL_TRACES_SAMPLER`, ...).
//!
//! Off unless an endpoint is set. Off, no layer is installed: the spans' callsites are disabled
//! by the log filter and cost a relaxed load each, and nothing is extracted or injected (a
//! client's `traceparent` goes upstream as it came). On, a W3C `traceparent` starts each
//! request's span as its child, and each upstream attempt sends its own.
//!
//! Spans carry names, ids, routes and statuses only: never a key, token, header value or query.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithHttpConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static ON: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported.
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The exporter and its tracer provider, while traces are on.
#[derive(Debug)]
pub struct Telemetry {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Telemetry {
    /// From the standard variables: `None` (off) unless `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not `true`,
    /// `OTEL_TRACES_EXPORTER` not `none`). Call before any async runtime starts: the exporter's
    /// client runs on a thread of its own.
    pub fn from_env() -> Result<Option<Self>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            return Ok(None);
        }
        for name in [
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ] {
            if let Some(p) = var(name)
                && p != "http/protobuf"
            {
                return Err(format!(
                    "{name}={p}: Keyward exports traces over http/protobuf only"
                ));
            }
        }
        Self::build(None).map(Some)
    }

    /// Traces to the OTLP/HTTP receiver at `base` (`/v1/traces` is added), whatever the
    /// environment says (the benches).
    pub fn with_endpoint(base: &str) -> Result<Self, String> {
        Self::build(Some(format!("{}/v1/traces", base.trim_end_matches('/'))))
    }

    fn build(endpoint: Option<String>) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the OTLP exporter's HTTP client: {e}"))?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client);
        if let Some(endpoint) = endpoint {
            use opentelemetry_otlp::WithExportConfig as _;
            exporter = exporter.with_endpoint(endpoint);
        }
        // The exporter's message quotes the endpoint, which may hold a user and password.
        let exporter = exporter.build().map_err(|_| {
            "cannot set up the OTLP exporter: check OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT), a URL such as http://collector:4318, and OTEL_EXPORTER_OTLP_HEADERS".to_owned()
        })?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if var("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("keyward");
        }
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        ON.store(true, Ordering::Relaxed);
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        // Without the source locations, thread names and busy/idle times each span would
        // otherwise carry: a quarter less work per span (the gateway bench).
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("keyward"))
            .with_error_records_to_exceptions(false)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
    }

    /// Sends what is buffered and stops the exporter (call after the runtime has ended).
    pub fn shutdown(self) {
        ON.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: traces not all exported at shutdown: {e}");
        }
    }
}

/// Makes `span` the child of the request's W3C `traceparent`, if it has one (traces on).
pub(crate) fn adopt_parent(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !on() || !headers.contains_key("traceparent") {
        return;
    }
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Writes `span`'s `traceparent` (and `tracestate`) into an upstream request's headers (traces
/// on; off, the client's own pass as they came).
pub(crate) fn propagate(span: &tracing::Span, headers: &mut axum::http::HeaderMap) {
    if !on() {
        return;
    }
    TraceContextPropagator::new().inject_context(
        &span.context(),
        &mut opentelemetry_http::HeaderInjector(headers),
    );
    // An empty trace state is no header at all.
    if headers
        .get("tracestate")
        .is_some_and(|v| v.as_bytes().is_empty())
    {
        headers.remove("tracestate");
    }
}
