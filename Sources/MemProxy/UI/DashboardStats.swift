import Foundation
import Synchronization

/// What the dashboard's overview shows, since start and per minute over the last hour: requests that had memory,
/// memories and tokens injected, recall time (a log-scale histogram: p50/p99 within ~6%), fail-open events, the
/// writer's backlog and store errors. Recording is one uncontended lock and a few additions per request; nothing
/// is computed until a page is rendered.
final class DashboardStats: Sendable {
    /// One minute's (or the whole run's) figures.
    struct Window: Sendable {
        var requests = 0
        var memories = 0
        var tokens = 0
        var failOpen = 0
        var storeErrors = 0
        var backlog = 0
        var recall = [Int](repeating: 0, count: DashboardStats.buckets)
    }

    private struct State {
        var total = Window()
        /// 60 minutes, indexed by minute % 60; `minutes[i]` is valid when `stamps[i]` is that minute.
        var minutes = [Window](repeating: Window(), count: 60)
        var stamps = [Int64](repeating: -1, count: 60)
    }

    let started = Date()
    private let state = Mutex(State())

    /// Recall histogram: bucket i holds times up to 0.01 ms × 1.125^i (0.01 ms … ~8 s).
    static let buckets = 120

    static func bucket(milliseconds: Double) -> Int {
        guard milliseconds > 0.01 else { return 0 }
        return min(buckets - 1, Int((log(milliseconds / 0.01) / log(1.125)).rounded(.up)))
    }

    static func upperBound(ofBucket index: Int) -> Double { 0.01 * pow(1.125, Double(index)) }

    private func update(_ now: Date, _ body: (inout Window) -> Void) {
        let minute = Int64(now.timeIntervalSince1970 / 60)
        state.withLock { state in
            body(&state.total)
            let slot = Int(minute % 60)
            // A time an hour or more older than the slot's (a clock stepped back) counts in the total only.
            guard state.stamps[slot] <= minute else { return }
            if state.stamps[slot] != minute {
                state.stamps[slot] = minute
                state.minutes[slot] = Window()
            }
            body(&state.minutes[slot])
        }
    }

    /// A request that had memory recalled (and maybe injected).
    func recordRecall(milliseconds: Double, memories: Int, tokens: Int, now: Date = Date()) {
        let bucket = Self.bucket(milliseconds: milliseconds)
        update(now) { window in
            window.requests += 1
            window.memories += memories
            window.tokens += tokens
            window.recall[bucket] += 1
        }
    }

    /// A request that went on without memory because the store failed (`memory.fail_open`).
    func recordFailOpen(now: Date = Date()) {
        update(now) { $0.failOpen += 1 }
    }

    /// The writer's backlog and the store's error count, sampled when a page is rendered or by the sampler.
    func recordStore(backlog: Int, errors: Int, now: Date = Date()) {
        update(now) { window in
            window.backlog = max(window.backlog, backlog)
            window.storeErrors = max(window.storeErrors, errors)
        }
    }

    /// The run so far, the last hour summed, and the last 60 minutes one by one (oldest first).
    func snapshot(now: Date = Date()) -> (total: Window, hour: Window, minutes: [Window]) {
        let minute = Int64(now.timeIntervalSince1970 / 60)
        return state.withLock { state in
            var hour = Window()
            var minutes: [Window] = []
            for back in stride(from: 59, through: 0, by: -1) {
                let wanted = minute - Int64(back)
                let slot = Int(((wanted % 60) + 60) % 60)
                let window = state.stamps[slot] == wanted ? state.minutes[slot] : Window()
                minutes.append(window)
                hour.requests += window.requests
                hour.memories += window.memories
                hour.tokens += window.tokens
                hour.failOpen += window.failOpen
                hour.backlog = max(hour.backlog, window.backlog)
                hour.storeErrors = max(hour.storeErrors, window.storeErrors)
                for index in window.recall.indices { hour.recall[index] += window.recall[index] }
            }
            return (state.total, hour, minutes)
        }
    }

    /// The `fraction` percentile of a window's recall times, in ms (0 without requests).
    static func percentile(_ window: Window, _ fraction: Double) -> Double {
        let count = window.recall.reduce(0, +)
        guard count > 0 else { return 0 }
        let rank = max(1, Int((Double(count) * fraction).rounded(.up)))
        var seen = 0
        for (index, value) in window.recall.enumerated() {
            seen += value
            if seen >= rank { return upperBound(ofBucket: index) }
        }
        return upperBound(ofBucket: buckets - 1)
    }

    /// An inline SVG polyline of `values` (no chart library; numbers only, nothing from users).
    static func chart(_ values: [Double], label: String) -> String {
        let width = 240.0
        let height = 48.0
        let top = max(values.max() ?? 0, 1e-9)
        let step = values.count > 1 ? width / Double(values.count - 1) : width
        let points = values.enumerated().map { index, value in
            String(format: "%.1f,%.1f", Double(index) * step, height - 2 - (value / top) * (height - 4))
        }.joined(separator: " ")
        return """
            <svg class="chart" viewBox="0 0 240 48" preserveAspectRatio="none" role="img" aria-label="\(label), per minute, last hour">\
            <polyline fill="none" stroke="#0b4fa8" stroke-width="1.5" points="\(points)"/></svg>
            """
    }
}
