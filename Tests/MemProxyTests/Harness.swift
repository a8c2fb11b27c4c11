import FakeUpstream
import Foundation
import Logging
import MemProxy
import MemProxyStore
import MemProxyUpstream
import NIOCore
import Prometheus
import ServiceLifecycle
import Testing

/// A running memproxy in front of a running fake upstream, plus a libcurl client, all on loopback.
struct ProxyHarness: Sendable {
    let fake: FakeUpstream
    let proxyPort: Int
    let fakePort: Int
    let client: CurlEngine
    let proxyGroup: ServiceGroup
    let metrics: PrometheusCollectorRegistry

    /// Sends a request to memproxy and returns once the response head has arrived.
    func send(
        _ method: String,
        _ path: String,
        headers: [(name: String, value: String)] = [],
        body: String? = nil
    ) async throws -> UpstreamResponse {
        try await self.client.execute(
            UpstreamRequest(
                method: method,
                url: "http://127.0.0.1:\(self.proxyPort)\(path)",
                headers: headers,
                body: body.map { ByteBuffer(string: $0) }
            ),
            timeouts: UpstreamTimeouts(connectSeconds: 5, totalSeconds: 60)
        )
    }

    /// Sends a request and reads the whole response body as text.
    func fetch(
        _ method: String,
        _ path: String,
        headers: [(name: String, value: String)] = [],
        body: String? = nil
    ) async throws -> (response: UpstreamResponse, body: String) {
        let response = try await self.send(method, path, headers: headers, body: body)
        let bytes = try await response.collect(upTo: 64 * 1024 * 1024)
        return (response, String(buffer: bytes))
    }
}

let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

/// Starts the fake upstream, memproxy (configured by `configure`) and a client; runs `body`; shuts all down.
func withProxy(
    logger: Logger = quietLogger,
    memoryStore: (any MemoryStore)? = nil,
    configure: (inout ProxyConfiguration, _ fakePort: Int) -> Void = { _, _ in },
    _ body: (ProxyHarness) async throws -> Void
) async throws {
    let fake = FakeUpstream()
    let (fakePorts, fakePortContinuation) = AsyncStream.makeStream(of: Int.self)
    let fakeApp = fake.makeApplication(logger: quietLogger) { port in fakePortContinuation.yield(port) }
    let fakeGroup = ServiceGroup(services: [fakeApp], logger: quietLogger)
    let client = CurlEngine(logger: quietLogger)
    let clientGroup = ServiceGroup(services: [client], logger: quietLogger)

    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await fakeGroup.run() }
        group.addTask { try await clientGroup.run() }
        var fakePortIterator = fakePorts.makeAsyncIterator()
        let fakePort = try #require(await fakePortIterator.next())

        var configuration = ProxyConfiguration()
        configuration.server.listen = ListenAddress(host: "127.0.0.1", port: 0)
        configuration.upstream.url = "http://127.0.0.1:\(fakePort)"
        configuration.upstream.timeoutSeconds = 30
        // The product default (250 ms) is for release builds; a loaded CI machine running debug tests in parallel
        // must not turn slow recalls into fail-open. Tests of the deadline set their own.
        configuration.memory.recallTimeoutMs = 30_000
        configuration.memory.database = FileManager.default.temporaryDirectory
            .appendingPathComponent("memproxy-test-\(UUID().uuidString).db").path
        configure(&configuration, fakePort)
        let registry = PrometheusCollectorRegistry()
        let (proxyPorts, proxyPortContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = try buildApplication(
            configuration: configuration,
            logger: logger,
            metricsRegistry: registry,
            memoryStore: memoryStore
        ) { port in
            proxyPortContinuation.yield(port)
        }
        let proxyGroup = ServiceGroup(services: [app], logger: quietLogger)
        group.addTask { try await proxyGroup.run() }
        var proxyPortIterator = proxyPorts.makeAsyncIterator()
        let proxyPort = try #require(await proxyPortIterator.next())

        let harness = ProxyHarness(
            fake: fake,
            proxyPort: proxyPort,
            fakePort: fakePort,
            client: client,
            proxyGroup: proxyGroup,
            metrics: registry
        )
        do {
            try await body(harness)
        } catch {
            fake.openGate()
            await proxyGroup.triggerGracefulShutdown()
            await fakeGroup.triggerGracefulShutdown()
            await clientGroup.triggerGracefulShutdown()
            throw error
        }
        fake.openGate()
        await proxyGroup.triggerGracefulShutdown()
        await fakeGroup.triggerGracefulShutdown()
        await clientGroup.triggerGracefulShutdown()
        try await group.waitForAll()
    }
}

struct DeadlineExceeded: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(self.what)" }
}

/// Runs `operation`, failing if it has not finished after `seconds` (a safety net, not synchronisation).
func withDeadline<T: Sendable>(
    _ seconds: Double,
    _ what: String,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw DeadlineExceeded(what: what)
        }
        group.cancelAll()
        return value
    }
}

extension UpstreamResponse {
    /// Reads chunks until the accumulated text contains `marker`; returns everything read so far.
    func read(until marker: String, iterator: inout UpstreamResponse.Body.AsyncIterator) async throws -> String {
        var text = ""
        while !text.contains(marker) {
            guard let chunk = try await iterator.next() else { break }
            text += String(buffer: chunk)
        }
        return text
    }
}

/// Decodes a JSON object body (test side only).
func jsonObject(_ text: String) throws -> [String: Any] {
    let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(value as? [String: Any])
}
