//! `/metrics` in the Prometheus text format: requests by route template, method and status,
//! a latency histogram, resolutions and audit events. Labels never hold ids or names: routes
//! appear as their templates (`/api/v1/credentials/{credential_id}`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// Request counts of one route template, by method and status.
type ByMethodStatus = HashMap<(Method, u16), u64>;

/// The server's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Counts by route template, then (method, status). Looked up by `&str`, so a request
    /// allocates nothing here once its route has been seen.
    requests: Mutex<HashMap<String, ByMethodStatus>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    fn observe(&self, route: &str, method: Method, status: u16, seconds: f64) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            let by_route = match requests.get_mut(route) {
                Some(r) => r,
                None => requests.entry(route.to_owned()).or_default(),
            };
            *by_route.entry((method, status)).or_default() += 1;
        }
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Whole microseconds: precise enough, and an integer counter.
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

/// Middleware that times every request.
pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    // Methods outside the standard set count as one: the gateway routes take any method, and
    // made-up ones must not grow the map.
    let method = match *req.method() {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::HEAD
        | Method::OPTIONS => req.method().clone(),
        // A short name is stored inline: no allocation, and it always parses.
        _ => Method::from_bytes(b"OTHER").unwrap_or_default(),
    };
    let start = Instant::now();
    let response = next.run(req).await;
    state.shared.metrics.observe(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// The exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text")))]
pub(crate) async fn render(State(state): State<AppState>) -> String {
    let m = &state.shared.metrics;
    let mut out = String::new();
    out.push_str(
        "# HELP keyward_http_requests_total HTTP requests by route template, method and status.\n",
    );
    out.push_str("# TYPE keyward_http_requests_total counter\n");
    {
        let requests = m.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(&str, &str, u16, u64)> = requests
            .iter()
            .flat_map(|(route, by)| {
                by.iter().map(move |((method, status), n)| {
                    (route.as_str(), method.as_str(), *status, *n)
                })
            })
            .collect();
        rows.sort_unstable();
        for (route, method, status, n) in rows {
            let _ = writeln!(
                out,
                "keyward_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
    }
    out.push_str("# HELP keyward_http_request_duration_seconds Time to answer a request.\n");
    out.push_str("# TYPE keyward_http_request_duration_seconds histogram\n");
    for (bound, bucket) in BUCKETS.iter().zip(&m.buckets) {
        let _ = writeln!(
            out,
            "keyward_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
            bucket.load(Ordering::Relaxed)
        );
    }
    let count = m.count.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "keyward_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "keyward_http_request_duration_seconds_sum {}",
        m.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "keyward_http_request_duration_seconds_count {count}");
    let stats = state.vault.serving().stats();
    out.push_str("# HELP keyward_resolutions_total Resolutions handed out or refused, audited.\n");
    out.push_str("# TYPE keyward_resolutions_total counter\n");
    let _ = writeln!(
        out,
        "keyward_resolutions_total{{outcome=\"success\"}} {}\nkeyward_resolutions_total{{outcome=\"failure\"}} {}",
        stats.resolutions_ok, stats.resolutions_failed
    );
    out.push_str("# HELP keyward_commit_batches_total Transactions committed for audited operations (group commit).\n");
    out.push_str("# TYPE keyward_commit_batches_total counter\n");
    let _ = writeln!(out, "keyward_commit_batches_total {}", stats.commit_batches);
    out.push_str("# HELP keyward_committed_operations_total Audited operations answered from those transactions.\n");
    out.push_str("# TYPE keyward_committed_operations_total counter\n");
    let _ = writeln!(
        out,
        "keyward_committed_operations_total {}",
        stats.committed_operations
    );
    state.shared.gateway.render_metrics(&mut out);
    state.shared.sinks.render_metrics(&mut out);
    if let Ok(events) = state.vault.serving().audit_event_count().await {
        out.push_str("# HELP keyward_audit_events_total Events in the audit log.\n");
        out.push_str("# TYPE keyward_audit_events_total counter\n");
        let _ = writeln!(out, "keyward_audit_events_total {events}");
    }
    out
}
