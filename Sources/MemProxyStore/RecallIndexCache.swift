import Foundation
import GRDB
import Logging
import Metrics
import Synchronization

/// The in-memory recall indexes (``SessionIndex``) of recently used sessions, kept in step with the database.
///
/// Every recall reads its session's row (`key`, `next_seq`, `revision`) in the same read transaction as
/// everything else, and brings the session's index up to that state first: rows inserted since are appended
/// (the common case: an exchange was just stored), and any update or delete of the session's memories
/// (`revision`, bumped by triggers, schema v5) or an insert that lands earlier in the timeline rebuilds it
/// from the table. So the index always reflects what the database holds, whoever wrote it (the writer, the
/// memory API, the CLI from another process).
///
/// The cache holds at most ``maxMemories`` memories (least recently used sessions are dropped first; the
/// session in use is always kept, however large).
final class RecallIndexCache: Sendable {
    let tokenizer: TextTokenizer
    let maxMemories: Int
    private let state: Mutex<State>
    private let logger: Logger
    /// Memories indexed across sessions.
    private let indexedMemories: Gauge
    /// Session indexes built from the table (first recall, after an edit, after eviction).
    private let builds: Counter

    private struct State {
        var entries: [String: Entry] = [:]
        var clock: UInt64 = 0
        var total = 0
    }

    /// One session's index, locked while it is brought up to date and ranked.
    private final class Entry: @unchecked Sendable {
        let lock = NSLock()
        /// Guarded by `lock`.
        var index: SessionIndex?
        /// Guarded by the cache's state lock.
        var lastUse: UInt64 = 0
        var size = 0
        var evicted = false
        /// Its index is being built from the table.
        var building = false
    }

    init(
        maxMemories: Int,
        logger: Logger = Logger(label: "memproxy.store", factory: { _ in SwiftLogNoOpLogHandler() }),
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance
    ) throws {
        tokenizer = try TextTokenizer()
        self.maxMemories = max(0, maxMemories)
        state = Mutex(State())
        self.logger = logger
        indexedMemories = Gauge(label: "memory.recall_index.memories", dimensions: [], factory: metricsFactory)
        builds = Counter(label: "memory.recall_index.builds", dimensions: [], factory: metricsFactory)
    }

    /// Sessions this large log their index build at info level (smaller ones at debug).
    static let loggedBuildSize = 10_000

    /// Runs `body` with the session's index, up to date with the database as `db` sees it; `nil` when the
    /// session has no row (no memory was ever stored, or it was forgotten).
    func withIndex<T>(
        _ db: Database,
        session: String,
        _ body: (SessionIndex) throws -> (T, [UInt64: Int])
    ) throws -> T? {
        guard
            let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: "SELECT key, next_seq, revision, memory_count FROM sessions WHERE session_id = ?"),
                arguments: [session]
            )
        else {
            drop(session)
            return nil
        }
        let (key, nextSeq, revision, memories): (Int64, Int64, Int64, Int) = (row[0], row[1], row[2], row[3])
        let (entry, building) = state.withLock { state -> (Entry, Bool) in
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
            if index.nextSeq < nextSeq, try !catchUp(&index, db: db, nextSeq: nextSeq) {
                index = try build(entry, db, session: session, key: key, nextSeq: nextSeq, revision: revision)
            }
        } else {
            index = try build(entry, db, session: session, key: key, nextSeq: nextSeq, revision: revision)
        }
        let (result, frequencies) = try body(index)
        for (term, frequency) in frequencies { index.cacheFrequency(term, frequency) }
        let size = index.count
        entry.index = index
        resize(entry, to: size)
        return result
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

    private func resizeLocked(_ state: inout State, _ entry: Entry, to size: Int) {
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

    private static let selectColumns = "\(Writer.memoryColumns), m.seq"

    /// Sessions at least this large are "being built" while their index is built (see ``RecallIndexBuilding``).
    static let largeSession = 10_000

    /// ``load(_:session:key:nextSeq:revision:)``, with the entry marked as building meanwhile.
    private func build(
        _ entry: Entry, _ db: Database, session: String, key: Int64, nextSeq: Int64, revision: Int64
    ) throws -> SessionIndex {
        state.withLock { _ in entry.building = true }
        defer { state.withLock { _ in entry.building = false } }
        return try load(db, session: session, key: key, nextSeq: nextSeq, revision: revision)
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
    private func load(_ db: Database, session: String, key: Int64, nextSeq: Int64, revision: Int64) throws
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
        let cursor = try Row.fetchCursor(
            db.cachedStatement(
                sql: "SELECT \(Self.selectColumns) FROM memories m WHERE m.session_id = ? ORDER BY m.created_at, m.seq"
            ),
            arguments: [session]
        )
        while let row = try cursor.next() {
            index.append(Writer.memory(from: row), seq: row[10], tokenizer: tokenizer)
        }
        return index
    }

    /// Appends the rows inserted since the index was built; false when one of them does not sort last (the
    /// index must then be rebuilt).
    private func catchUp(_ index: inout SessionIndex, db: Database, nextSeq: Int64) throws -> Bool {
        let range = Schema.rowRange(sessionKey: index.key)
        let rows = try Row.fetchAll(
            db.cachedStatement(
                sql: "SELECT \(Self.selectColumns) FROM memories m WHERE m.seq BETWEEN ? AND ? ORDER BY m.seq"),
            arguments: [range.lower | index.nextSeq, range.upper]
        )
        for row in rows {
            let memory = Writer.memory(from: row)
            let seq: Int64 = row[10]
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
