import CoreMetrics
import Metrics
import Synchronization

/// The proxy's own metrics, created from one factory so tests can use a private registry.
/// Names follow Prometheus conventions; `/metrics` renders them.
///
/// Handles are created once and cached: creating a metric is a registry lookup under the registry's lock,
/// which is too much for every request.
struct AppMetrics: Sendable {
    let factory: any MetricsFactory
    let inFlight: Meter
    private let recall: Timer
    private let injected: Counter
    /// Requests proxied without storing because the writer's queue was full (`memory.max_queued_writes`).
    private let backlogSkipped: Counter
    private let upstream: Timer
    private let requestHandles: HandleCache
    /// What the dashboard's overview shows (since start, per minute over the last hour).
    let dashboard = DashboardStats()

    init(factory: any MetricsFactory) {
        self.factory = factory
        self.inFlight = Meter(label: "http_server_requests_in_flight", factory: factory)
        self.recall = Timer(label: "memory_recall_duration_seconds", dimensions: [], factory: factory)
        self.injected = Counter(label: "memory_injected_total", dimensions: [], factory: factory)
        self.backlogSkipped = Counter(label: "memory_backlog_skipped_total", dimensions: [], factory: factory)
        self.upstream = Timer(label: "upstream_request_duration_seconds", dimensions: [], factory: factory)
        self.requestHandles = HandleCache(factory: factory)
    }

    /// Counts one finished request and records its duration (labels: route, method, status).
    func recordRequest(route: String, method: String, status: Int, seconds: Double) {
        let (counter, timer) = self.requestHandles.handles(route: route, method: method, status: status)
        counter.increment()
        timer.recordSeconds(seconds)
    }

    /// Records one recall's duration.
    func recordRecall(milliseconds: Double) {
        self.recall.recordNanoseconds(Int64(milliseconds * 1_000_000))
    }

    /// Records one request's memory: its recall time and what was injected (the dashboard's overview).
    func recordMemory(recallMs: Double, memories: Int, tokens: Int) {
        self.dashboard.recordRecall(milliseconds: recallMs, memories: memories, tokens: tokens)
    }

    /// A request that went on without memory because the store failed.
    func recordFailOpen() {
        self.dashboard.recordFailOpen()
    }

    /// Counts memories injected into requests.
    func recordBacklogSkipped() {
        self.backlogSkipped.increment()
    }

    func recordInjected(count: Int) {
        self.injected.increment(by: count)
    }

    /// Records how long the upstream took, from sending the request to the end of its body.
    func recordUpstream(seconds: Double, status: Int) {
        self.upstream.recordSeconds(seconds)
    }
}

/// Request counters by (route, method, status) and duration timers by route, created on first use.
private final class HandleCache: Sendable {
    private struct Key: Hashable {
        var route: String
        var method: String
        var status: Int
    }

    private let factory: any MetricsFactory
    private let handles = Mutex<(counters: [Key: Counter], timers: [String: Timer])>(([:], [:]))

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func handles(route: String, method: String, status: Int) -> (Counter, Timer) {
        let key = Key(route: route, method: method, status: status)
        return self.handles.withLock { cache in
            let counter =
                cache.counters[key]
                ?? {
                    let dimensions = [("route", route), ("method", method), ("status", String(status))]
                    let made = Counter(label: "http_server_requests_total", dimensions: dimensions, factory: factory)
                    cache.counters[key] = made
                    return made
                }()
            let timer =
                cache.timers[route]
                ?? {
                    let made = Timer(
                        label: "http_server_request_duration_seconds", dimensions: [("route", route)], factory: factory)
                    cache.timers[route] = made
                    return made
                }()
            return (counter, timer)
        }
    }
}
