import CoreMetrics
import Metrics

/// The proxy's own metrics, created from one factory so tests can use a private registry.
/// Names follow Prometheus conventions; `/metrics` renders them.
struct AppMetrics: Sendable {
    let factory: any MetricsFactory
    let inFlight: Meter

    init(factory: any MetricsFactory) {
        self.factory = factory
        self.inFlight = Meter(label: "http_server_requests_in_flight", factory: factory)
    }

    /// Counts one finished request and records its duration (labels: route, method, status).
    func recordRequest(route: String, method: String, status: Int, seconds: Double) {
        let dimensions = [("route", route), ("method", method), ("status", String(status))]
        Counter(label: "http_server_requests_total", dimensions: dimensions, factory: self.factory).increment()
        Timer(label: "http_server_request_duration_seconds", dimensions: [("route", route)], factory: self.factory)
            .recordSeconds(seconds)
    }

    /// Records one recall's duration.
    func recordRecall(milliseconds: Double) {
        Timer(label: "memory_recall_duration_seconds", dimensions: [], factory: self.factory)
            .recordNanoseconds(Int64(milliseconds * 1_000_000))
    }

    /// Counts memories injected into requests.
    func recordInjected(count: Int) {
        Counter(label: "memory_injected_total", dimensions: [], factory: self.factory).increment(by: count)
    }

    /// Records how long the upstream took, from sending the request to the end of its body.
    func recordUpstream(seconds: Double, status: Int) {
        Timer(label: "upstream_request_duration_seconds", dimensions: [], factory: self.factory)
            .recordSeconds(seconds)
    }
}
