//! Prometheus metrics: requests by route template and status, their latency, the store's
//! connection pool, and build information.
//!
//! Every application owns its own [`prometheus::Registry`] instead of registering into the
//! crate's process-wide default one: tests run many applications in one process, and each must
//! count only its own requests. The registry lives in the app data and is shared by the worker
//! threads; the metric types are atomics, so recording takes no lock.
//!
//! # Labels
//! Label values come from closed sets, so that no caller can grow the number of series and no
//! secret can become a label: `method` is a standard method name or `OTHER`, `route` is the
//! route *template* (`/namespaces/{accessKey}`) or [`UNMATCHED_ROUTE`], never the raw path,
//! and `status` is the numeric status.
//!
//! The pool gauges are read from the store when `/metrics` is scraped rather than kept up to
//! date: the pool already counts, so there is nothing to track between scrapes. [`Metrics`]
//! holds how to read it (a closure over the store, given at start-up as
//! `move || store.pool_status()`, the adapters' [`Store::pool_status`]), so neither the route
//! nor the registry depends on which store serves, and an application over a store without a
//! pool (the in-memory one, in tests) gives a reader of its own.
//!
//! [`Store::pool_status`]: secrets_adapters::Store::pool_status

use std::time::Duration;

use actix_web::http::Method;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use secrets_adapters::{PoolStatus, ReadRouting};

/// The `route` label (and log field) of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// The media type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The method as a label value: one of a closed set, so an invented method cannot add series.
#[must_use]
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// One application's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_connections: IntGaugeVec,
    pool_waiting: IntGauge,
    pool_status: Box<dyn Fn() -> PoolStatus + Send + Sync>,
    standby_reads: IntCounterVec,
    read_routing: Box<dyn Fn() -> ReadRouting + Send + Sync>,
    audit_refusals: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric in a registry of its own. `backend` names the store
    /// (`sqlite` or `postgres`) in the build information; `pool_status` reads its connection
    /// pool at each scrape.
    ///
    /// # Errors
    /// Only when two metrics share a name: a bug, reported at start-up.
    pub fn new(
        backend: &str,
        pool_status: impl Fn() -> PoolStatus + Send + Sync + 'static,
    ) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "secrets_http_requests_total",
                "HTTP requests answered, by route template and status.",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "secrets_http_request_duration_seconds",
                "Time from a request's arrival to its response, by route template and status.",
            )
            // From a hot read on a warm connection (about a millisecond) to past the default store
            // timeout (5 s).
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route", "status"],
        )?;
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "secrets_store_pool_connections",
                "The store's connection pool: the most it opens (max), open now (open), open and idle (idle).",
            ),
            &["state"],
        )?;
        let pool_waiting = IntGauge::new(
            "secrets_store_pool_waiting",
            "Callers waiting for a connection from the store's pool.",
        )?;
        let standby_reads = IntCounterVec::new(
            Opts::new(
                "secrets_store_standby_reads_total",
                "Hot reads tried on standbys (storage.read_urls), by outcome: served (the standby \
                 had caught up with the primary), lagging or unreachable (the read went on to \
                 another standby or the primary), unproven (the primary's position could not be \
                 read; the read went to the primary).",
            ),
            &["outcome"],
        )?;
        let audit_refusals = IntCounter::new(
            "secrets_audit_refusals_total",
            "Requests answered 503 audit_unavailable: their audit line could not be written in \
             audit.timeout_ms, or the trail was failing.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "secrets_build_info",
                "Always 1; the labels tell the build and the store.",
            ),
            &["version", "backend"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), backend])
            .set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(pool_waiting.clone()))?;
        registry.register(Box::new(standby_reads.clone()))?;
        registry.register(Box::new(audit_refusals.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Self {
            registry,
            requests,
            latency,
            pool_connections,
            pool_waiting,
            pool_status: Box::new(pool_status),
            standby_reads,
            read_routing: Box::new(ReadRouting::default),
            audit_refusals,
        })
    }

    /// Reads where the store's hot reads went at each scrape (the adapters'
    /// `Store::read_routing`); without it none are reported.
    #[must_use]
    pub fn with_read_routing(
        mut self,
        read_routing: impl Fn() -> ReadRouting + Send + Sync + 'static,
    ) -> Self {
        self.read_routing = Box::new(read_routing);
        self
    }

    /// Counts a request refused because its audit line could not be written.
    pub fn audit_refused(&self) {
        self.audit_refusals.inc();
    }

    /// Counts one answered request.
    pub fn observe_request(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition of every metric, with the pool gauges read first.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let pool = (self.pool_status)();
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        for (state, value) in [
            ("max", pool.max_size),
            ("open", pool.size),
            ("idle", pool.available),
        ] {
            self.pool_connections
                .with_label_values(&[state])
                .set(gauge(value));
        }
        self.pool_waiting.set(gauge(pool.waiting));
        // The store counts; the counters catch up with it (a series appears with its first).
        let routing = (self.read_routing)();
        for (outcome, total) in [
            ("served", routing.standby),
            ("lagging", routing.lagging),
            ("unreachable", routing.unreachable),
            ("unproven", routing.unproven),
        ] {
            if total == 0 {
                continue;
            }
            let shown = self
                .standby_reads
                .get_metric_with_label_values(&[outcome])?;
            if total > shown.get() {
                shown.inc_by(total - shown.get());
            }
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|error| prometheus::Error::Msg(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_counted_under_its_labels_and_the_pool_and_build_are_reported() {
        let metrics = Metrics::new("sqlite", || PoolStatus {
            max_size: 16,
            size: 3,
            available: 2,
            waiting: 5,
        })
        .expect("metrics register");
        metrics.observe_request(
            "GET",
            "/namespaces/{accessKey}",
            200,
            Duration::from_millis(3),
        );
        metrics.observe_request(
            "GET",
            "/namespaces/{accessKey}",
            200,
            Duration::from_millis(7),
        );
        let text = metrics.render().expect("renders");
        for line in [
            r#"secrets_http_requests_total{method="GET",route="/namespaces/{accessKey}",status="200"} 2"#,
            r#"secrets_http_request_duration_seconds_count{method="GET",route="/namespaces/{accessKey}",status="200"} 2"#,
            r#"secrets_http_request_duration_seconds_bucket{method="GET",route="/namespaces/{accessKey}",status="200",le="0.005"} 1"#,
            r#"secrets_store_pool_connections{state="max"} 16"#,
            r#"secrets_store_pool_connections{state="open"} 3"#,
            r#"secrets_store_pool_connections{state="idle"} 2"#,
            "secrets_store_pool_waiting 5",
            &format!(
                r#"secrets_build_info{{backend="sqlite",version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn standby_reads_are_reported_by_outcome_once_there_are_any() {
        let pool = || PoolStatus {
            max_size: 1,
            size: 0,
            available: 0,
            waiting: 0,
        };
        let routing = std::sync::Arc::new(std::sync::Mutex::new(ReadRouting {
            standby: 5,
            lagging: 2,
            ..ReadRouting::default()
        }));
        let read = std::sync::Arc::clone(&routing);
        let metrics = Metrics::new("postgres", pool)
            .expect("metrics register")
            .with_read_routing(move || *read.lock().expect("routing"));
        let text = metrics.render().expect("renders");
        for line in [
            r#"secrets_store_standby_reads_total{outcome="served"} 5"#,
            r#"secrets_store_standby_reads_total{outcome="lagging"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(!text.contains(r#"outcome="unreachable""#), "{text}");
        // The counters follow the store's counts from one scrape to the next.
        routing.lock().expect("routing").standby = 9;
        let text = metrics.render().expect("renders");
        assert!(
            text.lines()
                .any(|l| l == r#"secrets_store_standby_reads_total{outcome="served"} 9"#),
            "{text}"
        );
        // Without standbys, nothing is reported.
        let none = Metrics::new("sqlite", pool).expect("metrics register");
        assert!(!none.render().expect("renders").contains("outcome="));
    }

    #[test]
    fn two_applications_count_separately() {
        let pool = || PoolStatus {
            max_size: 1,
            size: 0,
            available: 0,
            waiting: 0,
        };
        let one = Metrics::new("sqlite", pool).expect("one");
        let two = Metrics::new("sqlite", pool).expect("two");
        one.observe_request("POST", "/namespaces", 201, Duration::from_millis(1));
        assert!(
            one.render()
                .expect("one")
                .contains("secrets_http_requests_total{")
        );
        assert!(
            !two.render()
                .expect("two")
                .contains("secrets_http_requests_total{")
        );
    }

    #[test]
    fn invented_methods_share_one_label() {
        let method = Method::from_bytes(b"HUNTER2").expect("a valid token");
        assert_eq!(method_label(&method), "OTHER");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }
}
