//! Prometheus metrics, kept by hand: a few counters and one latency histogram.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the request-duration histogram buckets.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    bucket_counts: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    response_bytes: AtomicU64,
    request_bytes: AtomicU64,
}

impl Metrics {
    pub fn observe(
        &self,
        method: &str,
        status: u16,
        duration: Duration,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((method.to_string(), status))
            .or_insert(0) += 1;
        let secs = duration.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.bucket_counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_micros
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
        self.response_bytes
            .fetch_add(response_bytes, Ordering::Relaxed);
        self.request_bytes
            .fetch_add(request_bytes, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP wharf_registry_http_requests_total HTTP requests by method and status.\n",
        );
        out.push_str("# TYPE wharf_registry_http_requests_total counter\n");
        for ((method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "wharf_registry_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP wharf_registry_http_request_duration_seconds Time to the response head.\n",
        );
        out.push_str("# TYPE wharf_registry_http_request_duration_seconds histogram\n");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.bucket_counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "wharf_registry_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "wharf_registry_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "wharf_registry_http_request_duration_seconds_sum {sum}"
        );
        let _ = writeln!(
            out,
            "wharf_registry_http_request_duration_seconds_count {count}"
        );
        out.push_str(
            "# HELP wharf_registry_http_response_bytes_total Declared response body bytes.\n",
        );
        out.push_str("# TYPE wharf_registry_http_response_bytes_total counter\n");
        let _ = writeln!(
            out,
            "wharf_registry_http_response_bytes_total {}",
            self.response_bytes.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP wharf_registry_http_request_bytes_total Declared request body bytes.\n",
        );
        out.push_str("# TYPE wharf_registry_http_request_bytes_total counter\n");
        let _ = writeln!(
            out,
            "wharf_registry_http_request_bytes_total {}",
            self.request_bytes.load(Ordering::Relaxed)
        );
        out
    }
}
