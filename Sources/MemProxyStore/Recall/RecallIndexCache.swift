import Foundation
import Logging
import Metrics
import Synchronization

/// The in-memory recall indexes (``SessionIndex``) of recently used sessions, kept in step with the database.
///
/// Every recall reads its session's row (`key`, `next_seq`, `revision`) in the same read transaction as
/// everything else (through ``SessionRows``, which each backend implements over its reads), and brings the session's
/// index up to that state first: rows inserted since are appended (the common case: an exchange was just stored),
/// and any update or delete of the session's memories (`revision`, bumped by triggers, schema v5) or an insert that
/// lands earlier in the timeline rebuilds it from the table. So the index always reflects what the database holds,
/// whoever wrote it (the writer, the memory API, the CLI from another process).
///
/// The cache holds at most ``maxMemories`` memories (least recently used sessions are dropped first; the
/// session in use is always kept, however large).
///
/// **Recall without a database read.** Most recalls need no SQL at all: the writer appends what it commits to the
/// cached indexes itself (``finishCommit(_:)``), and the cache remembers the commit counter (``CommitSignal``; on
/// SQLite the WAL header, ``WALHeaderProbe``) of the database state its *fresh* entries reflect (the view). When the
/// counter is still the view, nobody (no other connection of this process, no other process) has committed since,
/// and a fresh entry is the session's current state: ``withCurrentIndex(session:_:)`` ranks it on the caller's
/// thread. Any other commit (the memory API, the CLI, plain SQL, pruning) moves the counter away from the view, and
/// recalls go back to ``withIndex(_:session:commitsBefore:_:)`` (a read transaction that checks the session's row),
/// which also marks the entries it verified fresh again.
final class RecallIndexCache: Sendable {
    let tokenizer: TextTokenizer
    let maxMemories: Int
    /// The database's commit counter (on SQLite the wal-index header); `nil` (no fast path) when it cannot be read.
    let commits: (any CommitSignal)?
    /// The embedding model (and dimensions) whose vectors recall ranks by meaning; `nil`: lexical only, no vector is
    /// read.
    let vectorModel: String?
    let state: Mutex<State>
    private let logger: Logger
    /// Memories indexed across sessions.
    let indexedMemories: Gauge
    /// Session indexes built from the table (first recall, after an edit, after eviction).
    private let builds: Counter
    /// Recalls answered from memory alone, and with a read transaction.
    private let memoryReads: Counter
    private let databaseReads: Counter

    struct State {
        var entries: [String: Entry] = [:]
        var clock: UInt64 = 0
        var total = 0
        /// Entries whose `generation` is this one are fresh: they reflect the database state of `view`.
        var generation: UInt64 = 1
        /// The commit counter (``CommitSignal``) of the state fresh entries reflect; `nil` before the first verified
        /// read.
        var view: UInt32?
        /// The counter the writer's transaction will leave when it commits: between its commit and
        /// ``finishCommit(_:)``, fresh entries are still a consistent (slightly older) snapshot, and nobody can know
        /// that the commit happened yet (its acknowledgements come after ``finishCommit(_:)``).
        var pending: UInt32?
        /// The writer is between the start of a transaction and ``finishCommit(_:)``.
        var committing = false
        /// Recalls served from memory alone and with a database read (tests, benchmarks).
        var memoryRecalls = 0
        var databaseRecalls = 0
    }

    /// One session's index, locked while it is brought up to date and ranked.
    final class Entry: @unchecked Sendable {
        let lock = NSLock()
        /// Guarded by `lock`.
        var index: SessionIndex?
        /// Guarded by the cache's state lock.
        var lastUse: UInt64 = 0
        var size = 0
        var evicted = false
        /// Its index is being built from the table.
        var building = false
        /// Fresh when equal to the cache's generation. Guarded by the cache's state lock.
        var generation: UInt64 = 0
    }

    /// - Parameter commits: The database's commit counter, for recall without a database read; `nil` disables it.
    init(
        maxMemories: Int,
        commits: (any CommitSignal)? = nil,
        vectorModel: String? = nil,
        logger: Logger = Logger(label: "memproxy.store", factory: { _ in SwiftLogNoOpLogHandler() }),
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance
    ) throws {
        tokenizer = try TextTokenizer()
        self.maxMemories = max(0, maxMemories)
        self.commits = commits
        self.vectorModel = vectorModel
        state = Mutex(State())
        self.logger = logger
        indexedMemories = Gauge(label: "memory.recall_index.memories", dimensions: [], factory: metricsFactory)
        builds = Counter(label: "memory.recall_index.builds", dimensions: [], factory: metricsFactory)
        memoryReads = Counter(
            label: "memory.recall_index.reads", dimensions: [("source", "memory")], factory: metricsFactory)
        databaseReads = Counter(
            label: "memory.recall_index.reads", dimensions: [("source", "database")], factory: metricsFactory)
    }

    /// Sessions this large log their index build at info level (smaller ones at debug).
    static let loggedBuildSize = 10_000

    /// Runs `body` with the session's index, up to date with the database as `rows` (one read transaction) sees it;
    /// `nil` when the session has no row (no memory was ever stored, or it was forgotten).
    ///
    /// `commitsBefore`: the commit counter (``commitCounter()``) read *before* the read transaction began (GRDB
    /// starts it, and its snapshot, before `db` is handed over as `rows`); when no commit follows until the session's
    /// row is read, the index is known to reflect that state and is marked current (see the type's documentation).
    func withIndex<T>(
        _ rows: some SessionRows,
        session: String,
        commitsBefore before: UInt32? = nil,
        _ body: (SessionIndex) throws -> (T, [UInt64: Int])
    ) throws -> T? {
        guard let row = try rows.sessionState(session) else {
            drop(session)
            return nil
        }
        let (key, nextSeq, revision, memories) = (row.key, row.nextSeq, row.revision, row.memoryCount)
        // Nobody committed between the two counter reads, so this read transaction (whose snapshot was taken between
        // them) sees the state of `before`.
        let verified = before != nil && commitCounter() == before ? before : nil
        databaseReads.increment()
        let (entry, building) = state.withLock { state -> (Entry, Bool) in
            state.databaseRecalls += 1
            state.clock += 1
            let entry = state.entries[session] ?? Entry()
            if state.entries[session] == nil { state.entries[session] = entry }
            entry.lastUse = state.clock
            return (entry, entry.building)
        }
        // A large session's index takes long to build (about 1 s per 100,000 memories). Other recalls of that
        // session do not queue behind the build, each holding one of the pool's few reader connections (which
        // would stall every other session's recall): they fail at once, and the request goes on without memory.
        if building, memories >= Self.largeSession {
            throw RecallIndexBuilding(session: session, memories: memories)
        }
        entry.lock.lock()
        defer { entry.lock.unlock() }
        var index: SessionIndex
        if let cached = entry.index, cached.key == key, cached.revision >= revision {
            index = cached
            entry.index = nil  // unique owner while it is extended (no copy of its arrays)
            if index.nextSeq < nextSeq, try !catchUp(&index, rows: rows, nextSeq: nextSeq) {
                index = try build(entry, rows, session: session, key: key, nextSeq: nextSeq, revision: revision)
            }
        } else {
            index = try build(entry, rows, session: session, key: key, nextSeq: nextSeq, revision: revision)
        }
        if let vectorModel, index.vectors.revision < row.vectorRevision {
            // Vectors stored since (all of them for a new index): a few rows per commit of the embedder.
            let vectors = try rows.vectors(sessionKey: key, afterRevision: index.vectors.revision, model: vectorModel)
            index.setVectors(vectors, revision: row.vectorRevision)
        }
        let (result, frequencies) = try body(index)
        for (term, frequency) in frequencies { index.cacheFrequency(term, frequency) }
        let size = index.count
        entry.index = index
        resize(entry, to: size)
        if let verified { markFresh(entry, at: verified) }
        return result
    }

    /// The commit counter now (``CommitSignal``); for ``withIndex(_:session:commitsBefore:_:)``, read it before the
    /// read begins.
    func commitCounter() -> UInt32? { commits?.commitCounter() }

    /// Runs `body` with the session's index when it is known to be current without reading the database (see
    /// the type's documentation); `nil` when it is not (the caller reads through ``withIndex(_:session:commitsBefore:_:)``).
    /// Never waits: an index in use by a build or a catch-up is left alone.
    func withCurrentIndex<T>(session: String, _ body: (SessionIndex) throws -> (T, [UInt64: Int])) rethrows -> T? {
        guard let header = commitCounter() else { return nil }
        let candidate = state.withLock { state -> Entry? in
            guard state.view == header || state.pending == header, let entry = state.entries[session],
                entry.generation == state.generation,
                !entry.building
            else { return nil }
            state.clock += 1
            entry.lastUse = state.clock
            return entry
        }
        guard let entry = candidate, entry.lock.try() else { return nil }
        defer { entry.lock.unlock() }
        guard var index = entry.index else { return nil }
        state.withLock { $0.memoryRecalls += 1 }
        memoryReads.increment()
        let (result, frequencies) = try body(index)
        if !frequencies.isEmpty {
            entry.index = nil  // unique owner while the frequencies are added
            for (term, frequency) in frequencies { index.cacheFrequency(term, frequency) }
            entry.index = index
        }
        return result
    }

    /// Marks `entry` fresh after a read transaction that saw the state of `header` (and brought the entry to it).
    private func markFresh(_ entry: Entry, at header: UInt32) {
        state.withLock { state in
            if state.view == header {
                entry.generation = state.generation
            } else if !state.committing, state.view.map({ Int32(bitPattern: header &- $0) > 0 }) ?? true {
                // Someone else committed since the view (the memory API, another process): every other entry may be
                // behind now; this one is verified.
                state.generation += 1
                state.view = header
                entry.generation = state.generation
            }
        }
    }

    /// How many recalls were served from memory alone and with a database read (tests, benchmarks).
    var recallCounts: (memory: Int, database: Int) {
        state.withLock { ($0.memoryRecalls, $0.databaseRecalls) }
    }

    /// Forgets a session's index.
    func drop(_ session: String) {
        let total = state.withLock { state -> Int? in
            guard let entry = state.entries.removeValue(forKey: session) else { return nil }
            state.total -= entry.size
            entry.evicted = true
            return state.total
        }
        if let total { indexedMemories.record(total) }
    }

    /// The number of memories cached (for tests and metrics).
    var cachedMemories: Int { state.withLock { $0.total } }

    /// Whether the session's index is cached (for tests).
    func contains(_ session: String) -> Bool { state.withLock { $0.entries[session] != nil } }

    private func resize(_ entry: Entry, to size: Int) {
        let total = state.withLock { state -> Int in
            resizeLocked(&state, entry, to: size)
            return state.total
        }
        indexedMemories.record(total)
    }

    func resizeLocked(_ state: inout State, _ entry: Entry, to size: Int) {
        guard !entry.evicted else { return }
        state.total += size - entry.size
        entry.size = size
        guard state.total > maxMemories else { return }
        let victims = state.entries.filter { $0.value !== entry }.sorted { $0.value.lastUse < $1.value.lastUse }
        for (session, victim) in victims {
            guard state.total > maxMemories else { break }
            state.entries.removeValue(forKey: session)
            state.total -= victim.size
            victim.evicted = true
        }
    }

    /// Sessions at least this large are "being built" while their index is built (see ``RecallIndexBuilding``).
    static let largeSession = 10_000

    /// ``load(_:session:key:nextSeq:revision:)``, with the entry marked as building meanwhile.
    private func build(
        _ entry: Entry, _ rows: some SessionRows, session: String, key: Int64, nextSeq: Int64, revision: Int64
    ) throws -> SessionIndex {
        state.withLock { _ in entry.building = true }
        defer { state.withLock { _ in entry.building = false } }
        return try load(rows, session: session, key: key, nextSeq: nextSeq, revision: revision)
    }

    /// Marks a session's index as being built (tests).
    func markBuilding(_ session: String, _ building: Bool) {
        state.withLock { state in
            let entry = state.entries[session] ?? Entry()
            state.entries[session] = entry
            entry.building = building
        }
    }

    /// The session's index built from its rows.
    private func load(_ rows: some SessionRows, session: String, key: Int64, nextSeq: Int64, revision: Int64) throws
        -> SessionIndex
    {
        let start = ContinuousClock.now
        var index = SessionIndex(key: key, revision: revision, nextSeq: nextSeq)
        defer {
            builds.increment()
            let elapsed = ContinuousClock.now - start
            let metadata: Logger.Metadata = [
                "memory.session": "\(session)", "memory.memories": "\(index.count)",
                "memory.build_ms":
                    "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
            ]
            if index.count >= Self.loggedBuildSize {
                logger.info("memory.recall_index_built", metadata: metadata)
            } else {
                logger.debug("memory.recall_index_built", metadata: metadata)
            }
        }
        try rows.forEachMemory(ofSession: session) { memory, seq in
            index.append(memory, seq: seq, tokenizer: tokenizer)
        }
        return index
    }

    /// Appends the rows inserted since the index was built; false when one of them does not sort last (the
    /// index must then be rebuilt).
    private func catchUp(_ index: inout SessionIndex, rows: some SessionRows, nextSeq: Int64) throws -> Bool {
        for (memory, seq) in try rows.memories(sessionKey: index.key, fromNumber: index.nextSeq) {
            guard index.sortsLast(createdAt: memory.createdAt.timeIntervalSince1970, seq: seq) else { return false }
            index.append(memory, seq: seq, tokenizer: tokenizer)
        }
        index.nextSeq = nextSeq
        return true
    }
}

/// A recall of a large session whose index another recall is building right now; the request goes on without
/// memory (`memory.fail_open`), and a later recall finds the index built.
struct RecallIndexBuilding: Error, CustomStringConvertible {
    let session: String
    let memories: Int

    var description: String {
        "the recall index of this session (\(memories) memories) is being built; later requests will find it"
    }
}
