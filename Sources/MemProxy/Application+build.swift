public import Hummingbird
public import Logging
public import MemProxyStore
import MemProxyUpstream
import Metrics
import NIOCore
import ServiceLifecycle
public import Prometheus

/// Builds the whole memproxy application: routes, middleware, the curl engine and its services.
///
/// The CLI's `serve` and the integration tests call this same function.
/// - Parameters:
///   - configuration: the resolved configuration.
///   - logger: the server logger.
///   - metricsRegistry: where metrics are collected; `/metrics` renders it. Tests pass their own.
///   - memoryStore: the store to use instead of opening `memory.database` (tests use fakes); run as a service
///     when it is one.
///   - onServerRunning: called with the bound port once the server listens (port 0 picks a free one).
/// - Throws: when the memory database cannot be opened (the message says which path and what to do).
public func buildApplication(
    configuration: ProxyConfiguration,
    logger: Logger,
    metricsRegistry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    memoryStore: (any MemoryStore)? = nil,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    let factory = PrometheusMetricsFactory(registry: metricsRegistry)
    let metrics = AppMetrics(factory: factory)
    // Service order matters: shutdown runs in reverse, so the store flushes after the engine and server stop.
    var services: [any Service] = []
    let store: any MemoryStore
    if let memoryStore {
        store = memoryStore
        if let service = memoryStore as? any Service { services.append(service) }
    } else {
        let sqlite = try makeSQLiteStore(configuration: configuration, logger: logger, metricsFactory: factory)
        store = sqlite
        services.append(sqlite)
    }
    let engine = CurlEngine(logger: logger, metricsFactory: factory)
    services.append(engine)
    // Recall by meaning (`[embeddings]`): queries embedded on the request path, memories in the background.
    var queryEmbedder: QueryEmbedder?
    if let client = configuration.embeddings.client(upstream: engine) {
        queryEmbedder = QueryEmbedder(
            embedder: client, timeoutMs: configuration.embeddings.queryTimeoutMs, logger: logger,
            metricsFactory: factory)
        if let vectors = store as? any EmbeddingStore {
            services.append(
                Embedder(
                    store: vectors, embedder: client, model: configuration.embeddings.fingerprint,
                    batchSize: configuration.embeddings.batchSize, logger: logger, metricsFactory: factory))
        }
    }
    let memory = MemoryFlow(
        store: store, configuration: configuration.memory, metrics: metrics, queryEmbedder: queryEmbedder)
    let forwarder = Forwarder(upstream: engine, configuration: configuration, metrics: metrics, memory: memory)

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
    // The memory API needs a store that can list and edit memories (the SQLite store can; test fakes may not).
    if let managed = store as? any ManagedMemoryStore {
        let api = MemoryAPI(store: managed, contextBuilder: memory.contextBuilder, defaultTopK: configuration.memory.topK)
        api.addRoutes(to: router, apiKey: configuration.admin.apiKey, maxBodyBytes: configuration.server.maxBodyBytes)
        // The dashboard: pages over the same API, rendered only when someone asks.
        if configuration.ui.enabled, let dashboardStore = store as? any DashboardStore {
            let sqlite = store as? SQLiteMemoryStore
            Dashboard(
                api: api, store: dashboardStore, stats: metrics.dashboard, auth: UIAuth(apiKey: configuration.admin.apiKey),
                storeHealth: { sqlite.map { ($0.queuedWrites, $0.writeErrors) } }
            ).addRoutes(to: router)
        }
    }

    let listen = configuration.server.listen
    if configuration.admin.apiKey == nil, !AdminAuth.isLoopbackHost(listen.host) {
        logger.warning(
            "memory API unprotected: admin.api_key is not set, so /memory/v1 answers loopback clients only; set admin.api_key (MEMPROXY_ADMIN_API_KEY) to manage memories from other hosts",
            metadata: ["server.listen": .string(listen.description)]
        )
    }
    return Application(
        router: router,
        // A deep accept queue: bursts of hundreds of new connections (e.g. 500 streams opened at once) must not
        // overflow it and wait a second for a SYN retransmission.
        configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: nil, backlog: 1024),
        services: services,
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

/// Opens the configured SQLite store. The server and the CLI's memory commands both open it here, so a recall
/// preview from the terminal ranks exactly as the running proxy does.
func makeSQLiteStore(
    configuration: ProxyConfiguration,
    logger: Logger,
    metricsFactory: (any MetricsFactory)? = nil
) throws -> SQLiteMemoryStore {
    var storeConfiguration = SQLiteMemoryStore.Configuration(path: configuration.memory.database)
    storeConfiguration.recall = configuration.recall
    storeConfiguration.maxQueuedWrites = configuration.memory.maxQueuedWrites
    storeConfiguration.maxCachedMemories = configuration.memory.recallCacheMemories
    storeConfiguration.injectionRetentionDays = configuration.memory.injectionRetentionDays
    storeConfiguration.embeddingModel = configuration.embeddings.enabled ? configuration.embeddings.fingerprint : nil
    return try SQLiteMemoryStore(
        configuration: storeConfiguration,
        logger: logger,
        metricsFactory: metricsFactory
    )
}
