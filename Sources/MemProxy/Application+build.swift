public import Hummingbird
public import Logging
import MemProxyUpstream
import Metrics
import NIOCore
public import Prometheus

/// Builds the whole memproxy application: routes, middleware, the curl engine and its services.
///
/// The CLI's `serve` and the integration tests call this same function.
/// - Parameters:
///   - configuration: the resolved configuration.
///   - logger: the server logger.
///   - metricsRegistry: where metrics are collected; `/metrics` renders it. Tests pass their own.
///   - onServerRunning: called with the bound port once the server listens (port 0 picks a free one).
public func buildApplication(
    configuration: ProxyConfiguration,
    logger: Logger,
    metricsRegistry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    let factory = PrometheusMetricsFactory(registry: metricsRegistry)
    let metrics = AppMetrics(factory: factory)
    let engine = CurlEngine(logger: logger, metricsFactory: factory)
    let forwarder = Forwarder(upstream: engine, configuration: configuration, metrics: metrics)

    let router = Router(context: ProxyRequestContext.self)
    router.add(middleware: AccessLogMiddleware(metrics: metrics))
    router.add(middleware: ProxyMiddleware(forwarder: forwarder))
    router.get("/healthz") { _, _ in
        Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: "{\"status\":\"ok\"}"))
        )
    }
    router.get("/metrics") { _, _ in
        Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: metricsRegistry.emitToBuffer()))
        )
    }

    let listen = configuration.server.listen
    return Application(
        router: router,
        configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: nil),
        services: [engine],
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? listen.port
            let shown = ListenAddress(host: listen.host, port: port)
            logger.info(
                "listening on http://\(shown)",
                metadata: ["upstream.url": .string(configuration.upstream.url)]
            )
            await onServerRunning(port)
        },
        logger: logger
    )
}
