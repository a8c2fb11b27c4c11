import Foundation
import GRDB
public import Logging
import MemProxyCore
public import Metrics
public import ServiceLifecycle
import Synchronization

/// The SQLite (GRDB) implementation of ``MemoryStore``.
///
/// - Reads (`recall`) run on the pool's readers, concurrently with writes (WAL). Recall ranks in memory
///   (``RecallIndexCache``, shared by every backend); this store hands it a read's `Database` as ``SessionRows`` and
///   the WAL commit counter (``WALHeaderProbe``) as ``CommitSignal``.
/// - Writes submitted with `submit` are queued in memory and committed by ``run()``, the single writer, in
///   batched transactions; `submit` never waits for disk. Run the store as a `Service` in a `ServiceGroup`:
///   on graceful shutdown (or cancellation) it commits everything queued, then returns.
/// - ``insert(_:)``, ``memories(session:)`` and ``injections(session:limit:)`` are direct, synchronous
///   helpers for loaders, tools and tests: call them off the event loops.
public final class SQLiteMemoryStore: MemoryStore, Service {
    /// Store settings.
    public struct Configuration: Sendable {
        /// Path of the SQLite file; created when missing (its directory must exist).
        public var path: String
        /// Client retries (same session and request hash) within this many seconds are stored once.
        public var retryWindowSeconds: Double = 120
        /// The most queued items the writer commits in one transaction.
        public var maxBatch: Int = 256
        /// The write queue's bound, in items (an exchange or an injection record each): from this depth,
        /// ``waitForWriteCapacity(timeout:)`` makes new requests wait for the writer. `submit` itself never
        /// blocks or drops.
        public var maxQueuedWrites: Int = 50_000
        /// Injection records older than this many days are deleted by the writer when idle (at most hourly);
        /// 0 keeps them forever.
        public var injectionRetentionDays: Int = 30
        /// How recall ranks memories (neighbourhood, dates, temporal questions, feedback, type weights); the
        /// defaults are the best measured configuration. Unusable values fall back to their defaults: check
        /// ``RecallSettings/problems`` when loading configuration.
        public var recall = RecallSettings()
        /// The most memories recall keeps in memory across sessions (``RecallIndexCache``); least recently used
        /// sessions are dropped first.
        public var maxCachedMemories: Int = 500_000
        /// The embedding model (with its dimensions, e.g. `text-embedding-3-small@256`) whose vectors recall ranks
        /// by meaning when a query comes with an embedding; `nil` (the default): no vector is read, recall is lexical.
        public var embeddingModel: String?
        /// Whether the writer warms the recall cache at start (tests that count recalls turn it off).
        var warmsRecallIndex = true

        /// Creates a configuration with defaults.
        ///
        /// - Parameter path: Path of the SQLite file.
        public init(path: String) {
            self.path = path
        }
    }

    /// How long the writer waits under load, once woken, for more writes to commit with the first (within the
    /// promise that a stored exchange is recallable 10 ms after its response ended).
    static let writeLinger = Duration.milliseconds(4)

    /// The most bytes of the database file each connection maps into memory.
    static let mmapBytes = 1 << 30

    /// The writer connection's page cache, in KiB (SQLite's default is 2,000 KiB).
    static let writerCacheKiB = 32_000

    /// WAL pages after which the writer's commit checkpoints (SQLite's default is 1,000).
    static let walAutocheckpointPages = 10_000

    let configuration: Configuration
    /// `configuration.recall`, sanitized once.
    let recallSettings: RecallSettings
    let dbPool: DatabasePool
    /// Recall's in-memory session indexes.
    let recallCache: RecallIndexCache
    let logger: Logger
    let metrics: StoreMetrics
    let queue: Mutex<WriteQueue>
    /// When the writer last pruned old injection records.
    let lastInjectionPrune = Mutex<ContinuousClock.Instant?>(nil)
    private let wakeups: AsyncStream<Void>
    /// Wakes the writer (``enqueue(_:session:)``).
    let wake: AsyncStream<Void>.Continuation

    /// Opens (creating if needed) and migrates the database at `configuration.path`.
    ///
    /// - Parameters:
    ///   - configuration: Store settings.
    ///   - logger: Where store errors and lifecycle events are logged (never memory content at info level).
    ///   - metricsFactory: Metrics backend; the global `MetricsSystem.factory` when `nil`.
    /// - Throws: ``MemoryStoreError`` with code `cannotOpen` or `migrationFailed`.
    public init(configuration: Configuration, logger: Logger, metricsFactory: (any MetricsFactory)? = nil) throws {
        self.configuration = configuration
        self.recallSettings = configuration.recall.sanitized
        self.logger = logger
        self.metrics = StoreMetrics(factory: metricsFactory ?? MetricsSystem.factory)

        var config = GRDB.Configuration()
        config.busyMode = .timeout(5)
        config.maximumReaderCount = 4
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // Read pages through a shared memory map rather than a read() copy per page into each connection's
            // small page cache: recall reads a few hundred index pages per query (about 15% of its CPU time
            // went to those copies).
            try db.execute(sql: "PRAGMA mmap_size = \(Self.mmapBytes)")
            if !db.configuration.readonly {
                // The writer's connection: each batch dirties a few pages per active session (the tail of its
                // rows and of each per-session index). A larger page cache keeps them between batches, and a
                // checkpoint every 10,000 WAL pages (about 40 MB) instead of SQLite's 1,000 copies each hot page
                // into the database once for many commits instead of once for a few. Measured: the writer's
                // backlog after a saturating load a third to a half of what it was (BENCHMARKS.md).
                try db.execute(sql: "PRAGMA cache_size = -\(Self.writerCacheKiB)")
                try db.execute(sql: "PRAGMA wal_autocheckpoint = \(Self.walAutocheckpointPages)")
                // An insert into `memories` fires triggers, so SQLite keeps a statement journal of the pages it
                // changes. Past 64 KiB once, that journal becomes a temporary file for the connection's lifetime,
                // and from then on every such statement wrote its pages there too (two `pwrite`s per page, about
                // 4% of the proxy's CPU under load). In memory, it is a few pages per statement, freed as it ends.
                try db.execute(sql: "PRAGMA temp_store = MEMORY")
            }
        }
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: configuration.path, configuration: config)
        } catch {
            throw MemoryStoreError(
                .cannotOpen,
                "cannot open the memory database at '\(configuration.path)': make sure its directory exists and is "
                    + "writable by this process, or configure another path",
                cause: error
            )
        }
        do {
            try Schema.migrator.migrate(pool)
        } catch {
            throw MemoryStoreError(
                .migrationFailed,
                "cannot migrate the memory database at '\(configuration.path)': is it a memproxy database written "
                    + "by a newer or unrelated program? Move it aside or configure another path",
                cause: error
            )
        }
        self.dbPool = pool
        // Recall learns of other connections' and processes' commits from the WAL index header.
        let probe = WALHeaderProbe(databasePath: configuration.path)
        do {
            self.recallCache = try RecallIndexCache(
                maxMemories: configuration.maxCachedMemories,
                commits: probe,
                vectorModel: configuration.embeddingModel,
                logger: logger,
                metricsFactory: metricsFactory ?? MetricsSystem.factory
            )
        } catch {
            throw MemoryStoreError(
                .cannotOpen,
                "this SQLite library has no FTS5 porter tokenizer, which recall needs: install a SQLite built with FTS5",
                cause: error
            )
        }
        if probe == nil {
            logger.info(
                "memory.recall_reads_database_always",
                metadata: [
                    "memory.db": "\(configuration.path)",
                    "reason": "cannot read the WAL index header (-shm file): every recall reads the database",
                ]
            )
        }
        self.queue = Mutex(WriteQueue())
        (self.wakeups, self.wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: - MemoryStore

    /// The most relevant memories of `session` for `query`, best first. See ``MemoryStore/recall(session:query:limit:)``.
    ///
    /// Procedural memories of the session come first (newest first, counted in `limit`) whatever the query,
    /// even one with no usable term; they carry the best score of the result. Ranking follows
    /// ``Configuration/recall``.
    ///
    /// - Parameters:
    ///   - session: The session to search.
    ///   - query: Free text; never interpreted as FTS5 syntax.
    ///   - limit: The most memories to return.
    /// - Returns: At most `limit` memories, highest score first.
    public func recall(session: String, query: String, limit: Int) async throws -> [RecalledMemory] {
        guard limit > 0 else { return [] }
        let recallQuery = RecallQuery(text: query)
        let context = try await readContext(
            session: session, query: recallQuery, limit: limit, proceduralLimit: limit,
            proceduralCountsTowardLimit: true)
        // Procedural memories lead the list: they carry the best score of the result (at least 1), so scores
        // never increase down the list.
        let lead = max(1, context.recalled.first?.score ?? 1)
        return context.procedural.map { RecalledMemory(memory: $0, score: lead) } + context.recalled
    }

    /// In one read: the session's procedural memories (newest first, at most `proceduralLimit`) and, when
    /// `query` is given, its `limit` best other memories for it.
    public func context(
        session: String, query: String?, vector: [Float]?, limit: Int, proceduralLimit: Int
    ) async throws -> (procedural: [Memory], recalled: [RecalledMemory]) {
        let recallQuery = query.map({ RecallQuery(text: $0, vector: vector) })
        return try await readContext(
            session: session, query: recallQuery, limit: limit, proceduralLimit: proceduralLimit,
            proceduralCountsTowardLimit: false)
    }

    /// ``context(session:query:limit:proceduralLimit:)`` with each recalled memory's score explained.
    public func explainedContext(
        session: String, query: String, vector: [Float]?, limit: Int, proceduralLimit: Int
    ) async throws -> (procedural: [Memory], recalled: [RecalledMemory]) {
        try await readContext(
            session: session, query: RecallQuery(text: query, explain: true, vector: vector), limit: limit,
            proceduralLimit: proceduralLimit, proceduralCountsTowardLimit: false)
    }

    /// From the session's in-memory index when it is known to be current, else in a read transaction. The commit
    /// counter is read before the read begins: GRDB takes the snapshot before running the closure, and a counter
    /// read inside it could name a commit the snapshot does not hold.
    private func readContext(
        session: String, query: RecallQuery?, limit: Int, proceduralLimit: Int, proceduralCountsTowardLimit: Bool
    ) async throws -> (procedural: [Memory], recalled: [RecalledMemory]) {
        let cache = recallCache
        let settings = recallSettings
        if let context = Recall.cachedContext(
            cache: cache, session: session, query: query, limit: limit, proceduralLimit: proceduralLimit,
            proceduralCountsTowardLimit: proceduralCountsTowardLimit, settings: settings
        ) {
            return context
        }
        let commitsBefore = cache.commitCounter()
        return try await dbPool.read { db in
            try Recall.context(
                db, cache: cache, session: session, query: query, limit: limit, proceduralLimit: proceduralLimit,
                proceduralCountsTowardLimit: proceduralCountsTowardLimit, settings: settings,
                commitsBefore: commitsBefore
            )
        }
    }

    /// ``context(session:query:limit:proceduralLimit:)`` when it needs no database read (the session's in-memory
    /// index is known to be current, see ``RecallIndexCache``): computed on the caller's thread, without waiting for
    /// anything. `nil` when the database must be read.
    public func cachedContext(session: String, query: String?, vector: [Float]?, limit: Int, proceduralLimit: Int)
        -> (procedural: [Memory], recalled: [RecalledMemory])?
    {
        guard
            let context = Recall.cachedContext(
                cache: recallCache, session: session, query: query.map({ RecallQuery(text: $0, vector: vector) }),
                limit: limit,
                proceduralLimit: proceduralLimit, settings: recallSettings
            )
        else { return nil }
        return context
    }

    /// Enqueues the exchange for the writer; never waits for disk.
    ///
    /// - Parameter exchange: The finished exchange.
    public func submit(_ exchange: ExchangeRecord) {
        enqueue(.exchange(exchange), session: exchange.sessionID)
    }

    /// Enqueues the injection record for the writer; never waits for disk.
    ///
    /// - Parameter injection: What was injected into one request.
    public func submit(_ injection: InjectionRecord) {
        enqueue(.injection(injection), session: injection.sessionID)
    }

    /// Waits until everything submitted before this call is committed (or failed). Returns at once when the
    /// writer has stopped. Needs ``run()`` to be running (or to start) to make progress.
    public func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = queue.withLock { state -> Bool in
                if state.stopped || state.completed >= state.submitted { return true }
                state.waiters.append((state.submitted, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    // MARK: - Service

    /// The single writer: commits queued items in batched transactions until graceful shutdown or
    /// cancellation, then commits everything still queued and returns.
    ///
    /// - Throws: ``MemoryStoreError`` with code `writerAlreadyRunning` if called more than once.
    public func run() async throws {
        let alreadyStarted = queue.withLock { state -> Bool in
            defer { state.started = true }
            return state.started
        }
        if alreadyStarted {
            throw MemoryStoreError(
                .writerAlreadyRunning,
                "the memory writer is already running: run each SQLiteMemoryStore once, in one ServiceGroup"
            )
        }
        logger.debug("memory writer started", metadata: ["memory.db": "\(configuration.path)"])
        let wake = self.wake
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                // Recall's indexes of the most recently active sessions are built in the background, so that the
                // first requests after a start do not each wait for their session's index.
                if self.configuration.warmsRecallIndex { group.addTask { await self.warmRecallIndex() } }
                var busy = false
                for await _ in self.wakeups {
                    // Under load (the last pass committed more than one item), let concurrent requests' writes join
                    // this transaction: a commit writes each page it touched once, however many rows it added
                    // there. A lone write is committed at once.
                    if busy, self.queue.withLock({ $0.pending.count < self.configuration.maxBatch && !$0.shuttingDown }) {
                        try? await Task.sleep(for: Self.writeLinger)
                    }
                    busy = await self.drain() > 1
                    await self.pruneInjectionsIfDue()
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.queue.withLock { $0.shuttingDown = true }
            wake.finish()
        }
        // Graceful shutdown or cancellation: commit whatever is still queued.
        await drain()
        let waiters = queue.withLock { state in
            state.stopped = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for (_, continuation) in waiters { continuation.resume() }
        admitWaiters()
        logger.debug("memory writer stopped", metadata: ["memory.db": "\(configuration.path)"])
    }

    // MARK: - Direct helpers

    /// Inserts memories in one transaction (for loaders, imports and benchmarks). Synchronous.
    ///
    /// - Parameter memories: The memories; their ids must be new.
    /// - Throws: A database error; nothing is inserted then.
    public func insert(_ memories: [Memory]) throws {
        try dbPool.write { db in
            for memory in memories {
                try Writer.insert(memory, in: db)
            }
        }
    }

    /// All memories of `session`, oldest first. Synchronous.
    ///
    /// - Parameter session: The session.
    /// - Returns: Its memories ordered by creation time.
    public func memories(session: String) throws -> [Memory] {
        try dbPool.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT \(Writer.memoryColumns) FROM memories m WHERE m.session_id = ? ORDER BY m.created_at, m.seq",
                arguments: [session]
            ).map(Writer.memory(from:))
        }
    }

    /// The newest injection records of `session`, newest first. Synchronous.
    ///
    /// - Parameters:
    ///   - session: The session.
    ///   - limit: The most records to return.
    /// - Returns: Injection records.
    public func injections(session: String, limit: Int) throws -> [InjectionRecord] {
        try dbPool.read { db in
            try Writer.injections(session: session, limit: limit, in: db)
        }
    }
}

/// The store's metrics (OpenTelemetry-style names). Recall's duration is the app's
/// `memory_recall_duration_seconds` (recall and block assembly, as the request waited for them).
struct StoreMetrics: Sendable {
    let queueDepth: Gauge
    let batchSize: Recorder
    let errors: TallyCounter

    init(factory: any MetricsFactory) {
        queueDepth = Gauge(label: "memory.store.queue_depth", dimensions: [], factory: factory)
        batchSize = Recorder(label: "memory.store.batch_size", dimensions: [], aggregate: true, factory: factory)
        errors = TallyCounter(Counter(label: "memory.store.errors", dimensions: [], factory: factory))
    }
}

/// A counter that also keeps its total readable (the dashboard shows store errors).
final class TallyCounter: Sendable {
    let counter: Counter
    private let tally = Atomic<Int>(0)

    init(_ counter: Counter) { self.counter = counter }

    func increment(by amount: Int = 1) {
        counter.increment(by: amount)
        tally.add(amount, ordering: .relaxed)
    }

    var total: Int { tally.load(ordering: .relaxed) }
}

extension SQLiteMemoryStore {
    /// Exchanges and injection records waiting for the writer (the dashboard's "writer backlog").
    public var queuedWrites: Int { queue.withLock { $0.pending.count } }

    /// Writes that failed since start (the dashboard's "store errors"; also `memory_store_errors`).
    public var writeErrors: Int { metrics.errors.total }
}
