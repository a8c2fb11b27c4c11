import Foundation
import GRDB
import Logging
import MemProxyCore
import Metrics

/// The SQL side of the single writer: one batch per transaction. A batch is first written without savepoints (two
/// statements per item fewer); if anything in it fails, it is rolled back and written again with one savepoint per
/// item, so that a bad item is rolled back and logged alone.
struct Writer: Sendable {
    let retryWindowSeconds: Double
    let logger: Logger
    let errors: Counter

    /// Commits `batch` and reports what it inserted and stored.
    ///
    /// `cache`, when given, hears of the commit just before it happens
    /// (``RecallIndexCache/prepareCommit(changeBefore:wrote:)``); the caller hands the result to
    /// ``RecallIndexCache/finishCommit(_:)`` and then calls ``acknowledge(_:)``.
    @discardableResult
    func commit(_ batch: [WriteItem], in db: Database, cache: RecallIndexCache? = nil) -> RecallIndexCache.Commit {
        var stored: [ExchangeRecord] = []
        var outcome = RecallIndexCache.Commit()
        let changesBefore = db.totalChangesCount
        // Last thing before COMMIT, the write lock held: the commit counter, for the recall cache.
        func announce() {
            outcome.changeBefore = cache?.commitCounter()
            cache?.prepareCommit(changeBefore: outcome.changeBefore, wrote: db.totalChangesCount != changesBefore)
        }
        do {
            do {
                try db.inTransaction {
                    // Separate variables: two inout accesses to one captured struct would overlap.
                    var inserted: [RecallIndexCache.InsertedMemory] = []
                    var changed: Set<String> = []
                    for item in batch {
                        if try write(item, in: db, inserted: &inserted, changed: &changed),
                            case .exchange(let exchange) = item
                        {
                            stored.append(exchange)
                        }
                    }
                    outcome.inserted = inserted
                    outcome.changed = changed
                    announce()
                    return .commit
                }
            } catch {
                stored = []
                outcome = RecallIndexCache.Commit()
                try db.inTransaction {
                    for item in batch {
                        var inserted: [RecallIndexCache.InsertedMemory] = []
                        var changed: Set<String> = []
                        do {
                            try db.inSavepoint {
                                if try write(item, in: db, inserted: &inserted, changed: &changed),
                                    case .exchange(let exchange) = item
                                {
                                    stored.append(exchange)
                                }
                                return .commit
                            }
                            outcome.inserted += inserted
                            outcome.changed.formUnion(changed)
                        } catch {
                            fail(item, error)
                        }
                    }
                    announce()
                    return .commit
                }
            }
            outcome.wrote = db.totalChangesCount != changesBefore
            outcome.stored = stored
        } catch {
            // The transaction itself failed (disk full, I/O error): every item of the batch is lost.
            errors.increment(by: batch.count)
            logger.error(
                "memory batch failed",
                metadata: ["memory.batch_size": "\(batch.count)", "error": "\(error)"]
            )
            // Nothing is known about what the database holds now: the cache reads it again.
            return RecallIndexCache.Commit()
        }
        return outcome
    }

    /// Logs the exchanges of a committed batch as stored: the acknowledgement that each survives a process crash
    /// (and, once the recall cache has been told, that the next recall finds it).
    func acknowledge(_ commit: RecallIndexCache.Commit) {
        for exchange in commit.stored {
            logger.info(
                "memory.exchange_stored",
                metadata: [
                    "memory.session": "\(exchange.sessionID)",
                    "memory.exchange_id": "\(exchange.exchangeID)",
                    "request.id": "\(exchange.requestID)",
                ]
            )
        }
    }

    private func fail(_ item: WriteItem, _ error: any Error) {
        errors.increment()
        var metadata: Logger.Metadata = ["memory.item": "\(item.kind)", "error": "\(error)"]
        switch item {
        case .exchange(let exchange):
            metadata["memory.session"] = "\(exchange.sessionID)"
            metadata["request.id"] = "\(exchange.requestID)"
        case .injection(let injection):
            metadata["memory.session"] = "\(injection.sessionID)"
            metadata["request.id"] = "\(injection.requestID)"
        }
        logger.error("memory write failed", metadata: metadata)
    }

    /// Returns whether the item was written (false: skipped as a duplicate).
    private func write(
        _ item: WriteItem, in db: Database, inserted: inout [RecallIndexCache.InsertedMemory],
        changed: inout Set<String>
    ) throws -> Bool {
        switch item {
        case .exchange(let exchange): return try write(exchange, in: db, inserted: &inserted, changed: &changed)
        case .injection(let injection):
            try write(injection, in: db)
            return true
        }
    }

    private func write(
        _ exchange: ExchangeRecord,
        in db: Database,
        inserted: inout [RecallIndexCache.InsertedMemory],
        changed: inout Set<String>
    ) throws -> Bool {
        let time = exchange.createdAt.timeIntervalSince1970
        let duplicate =
            try Bool.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT 1 FROM exchanges
                        WHERE session_id = ? AND request_hash = ? AND created_at BETWEEN ? AND ? LIMIT 1
                        """
                ),
                arguments: [
                    exchange.sessionID, exchange.requestHash, time - retryWindowSeconds, time + retryWindowSeconds,
                ]
            ) ?? false
        if duplicate {
            logger.debug(
                "skipping a retried exchange",
                metadata: ["memory.session": "\(exchange.sessionID)", "request.id": "\(exchange.requestID)"]
            )
            return false
        }
        // A cut-short exchange is recorded under a distinct hash. The client's retry of the same request completes
        // that exchange in place (its user half is not stored twice); a retry cut short too adds nothing.
        let incompleteHash = exchange.requestHash + ":incomplete"
        if let previous = try String.fetchOne(
            db.cachedStatement(
                sql: """
                    SELECT id FROM exchanges
                    WHERE session_id = ? AND request_hash = ? AND created_at BETWEEN ? AND ? LIMIT 1
                    """
            ),
            arguments: [exchange.sessionID, incompleteHash, time - retryWindowSeconds, time + retryWindowSeconds]
        ) {
            guard !exchange.assistantIncomplete else {
                logger.debug(
                    "skipping a retried exchange cut short again",
                    metadata: ["memory.session": "\(exchange.sessionID)", "request.id": "\(exchange.requestID)"]
                )
                return false
            }
            try complete(exchangeID: previous, with: exchange, in: db, inserted: &inserted, changed: &changed)
            return true
        }
        let storedHash = exchange.assistantIncomplete ? incompleteHash : exchange.requestHash
        try db.cachedStatement(
            sql: "INSERT OR IGNORE INTO exchanges(id, session_id, request_hash, created_at) VALUES (?, ?, ?, ?)"
        ).execute(arguments: [exchange.exchangeID, exchange.sessionID, storedHash, time])
        guard db.changesCount > 0 else {
            logger.debug(
                "skipping an exchange stored before",
                metadata: ["memory.session": "\(exchange.sessionID)", "request.id": "\(exchange.requestID)"]
            )
            return false
        }
        var memories: [Memory] = []
        if let userText = exchange.userText {
            memories.append(
                Memory(
                    sessionID: exchange.sessionID,
                    type: .episodic,
                    role: "user",
                    content: userText,
                    createdAt: exchange.createdAt,
                    source: "exchange",
                    metadata: exchange.metadata,
                    exchangeID: exchange.exchangeID
                )
            )
        }
        if let reply = exchange.assistantText {
            memories.append(Self.reply(reply, of: exchange, exchangeID: exchange.exchangeID))
        }
        inserted += try Self.insert(memories, in: db)
        return true
    }

    /// The assistant half of `exchange`, marked `incomplete` when it was cut short.
    private static func reply(_ text: String, of exchange: ExchangeRecord, exchangeID: String) -> Memory {
        Memory(
            sessionID: exchange.sessionID,
            type: .episodic,
            role: "assistant",
            content: text,
            createdAt: exchange.createdAt,
            source: "exchange",
            metadata: exchange.assistantIncomplete
                ? merging(["incomplete": true], into: exchange.metadata) : exchange.metadata,
            exchangeID: exchangeID
        )
    }

    /// A completed retry of the cut-short exchange `exchangeID`: its reply replaces the incomplete one (or is added
    /// when the first attempt got no text at all), and the exchange counts as complete from now on.
    private func complete(
        exchangeID: String,
        with exchange: ExchangeRecord,
        in db: Database,
        inserted: inout [RecallIndexCache.InsertedMemory],
        changed: inout Set<String>
    ) throws {
        try db.cachedStatement(sql: "UPDATE exchanges SET request_hash = ? WHERE id = ?")
            .execute(arguments: [exchange.requestHash, exchangeID])
        guard let reply = exchange.assistantText else { return }
        let seq = try Int64.fetchOne(
            db.cachedStatement(
                sql: "SELECT seq FROM memories WHERE exchange_id = ? AND role = 'assistant' AND session_id = ? LIMIT 1"
            ),
            arguments: [exchangeID, exchange.sessionID]
        )
        guard let seq else {
            inserted += try Self.insert([Self.reply(reply, of: exchange, exchangeID: exchangeID)], in: db)
            return
        }
        try db.cachedStatement(
            sql: "UPDATE memories SET content = ?, metadata = ?, updated_at = ?, content_hash = ? WHERE seq = ?"
        ).execute(arguments: [
            reply.storableText, exchange.metadata, exchange.createdAt.timeIntervalSince1970,
            StableHash.fnv1a64Hex(reply.utf8), seq,
        ])
        changed.insert(exchange.sessionID)
    }

    private func write(_ injection: InjectionRecord, in db: Database) throws {
        try db.cachedStatement(
            sql: """
                INSERT INTO injections(request_id, session_id, created_at, model, memory_ids, scores, tokens,
                                       recall_ms, block, api, response_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [
            injection.requestID, injection.sessionID, injection.createdAt.timeIntervalSince1970, injection.model,
            try Self.json(ids: injection.memoryIDs), try Self.json(scores: injection.scores), injection.tokens,
            injection.recallMs, injection.block, injection.api, injection.responseID,
        ])
    }

    // MARK: - Shared SQL

    /// Inserts `memory` with the next row id of its session (creating the session's key when new) and returns
    /// where it went, with the memory exactly as the table returns it. Recall finds it at its next read of the
    /// session (``RecallIndexCache``), or sooner when the writer hands it to the cache.
    @discardableResult
    static func insert(_ memory: Memory, in db: Database) throws -> RecallIndexCache.InsertedMemory {
        try insert([memory], in: db)[0]
    }

    /// Inserts memories of one session in order, numbered with one update of the session's row.
    static func insert(_ memories: [Memory], in db: Database) throws -> [RecallIndexCache.InsertedMemory] {
        guard let session = memories.first?.sessionID else { return [] }
        precondition(memories.allSatisfy { $0.sessionID == session }, "memories of one session only")
        let count = Int64(memories.count)
        guard
            let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        INSERT INTO sessions(session_id, next_seq) VALUES (?, ?)
                        ON CONFLICT(session_id) DO UPDATE SET next_seq = next_seq + excluded.next_seq
                        RETURNING key, next_seq - ?
                        """
                ),
                arguments: [session, count, count]
            )
        else {
            throw DatabaseError(resultCode: .SQLITE_INTERNAL, message: "session row missing after insert")
        }
        let key: Int64 = row[0]
        let first: Int64 = row[1]
        guard key < (1 << 31), first + count - 1 <= 0xFFFF_FFFF else {
            throw DatabaseError(resultCode: .SQLITE_FULL, message: "memory row ids exhausted for this session")
        }
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO memories(seq, id, session_id, type, role, content, created_at, updated_at, source, metadata,
                                     exchange_id, content_hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        )
        var inserted: [RecallIndexCache.InsertedMemory] = []
        inserted.reserveCapacity(memories.count)
        for (offset, memory) in memories.enumerated() {
            let number = first + Int64(offset)
            let seq = Schema.rowRange(sessionKey: key).lower | number
            var stored = memory
            stored.content = memory.content.storableText
            stored.createdAt = Date(timeIntervalSince1970: memory.createdAt.timeIntervalSince1970)
            stored.updatedAt = Date(timeIntervalSince1970: memory.updatedAt.timeIntervalSince1970)
            try statement.execute(arguments: [
                seq,
                stored.id, stored.sessionID, stored.type.rawValue, stored.role, stored.content,
                stored.createdAt.timeIntervalSince1970, stored.updatedAt.timeIntervalSince1970, stored.source,
                stored.metadata, stored.exchangeID, StableHash.fnv1a64Hex(memory.content.utf8),
            ])
            inserted.append(RecallIndexCache.InsertedMemory(memory: stored, key: key, number: number, seq: seq))
        }
        return inserted
    }

    /// Columns read by ``memory(from:)``, for a `memories` table aliased `m`.
    static let memoryColumns =
        "m.id, m.session_id, m.type, m.role, m.content, m.created_at, m.updated_at, m.source, m.metadata, m.exchange_id"

    static func memory(from row: Row) -> Memory {
        Memory(
            id: row[0],
            sessionID: row[1],
            type: MemoryType(rawValue: row[2] as String) ?? .episodic,
            role: row[3],
            content: row[4],
            createdAt: Date(timeIntervalSince1970: row[5]),
            updatedAt: Date(timeIntervalSince1970: row[6]),
            source: row[7],
            metadata: row[8],
            exchangeID: row[9]
        )
    }

    static func injections(session: String, limit: Int, in db: Database) throws -> [InjectionRecord] {
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT request_id, session_id, created_at, model, memory_ids, scores, tokens, recall_ms, block, api,
                       response_id
                FROM injections WHERE session_id = ? ORDER BY created_at DESC, seq DESC LIMIT ?
                """,
            arguments: [session, max(0, limit)]
        )
        let decoder = JSONDecoder()
        return try rows.map { row in
            InjectionRecord(
                requestID: row[0],
                sessionID: row[1],
                createdAt: Date(timeIntervalSince1970: row[2]),
                model: row[3],
                memoryIDs: try decoder.decode([String].self, from: Data((row[4] as String).utf8)),
                scores: try decoder.decode([Double].self, from: Data((row[5] as String).utf8)),
                tokens: row[6],
                recallMs: row[7],
                block: row[8],
                api: row[9],
                responseID: row[10]
            )
        }
    }

    private static func json(_ value: some Encodable) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    /// `ids` as a JSON array; memproxy's own ids (letters, digits, `_`) without a JSONEncoder, which cost more than
    /// the row's insert.
    static func json(ids: [String]) throws -> String {
        let plain = ids.allSatisfy { id in
            id.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || $0 == 0x5F
            }
        }
        guard plain else { return try json(ids) }
        return "[" + ids.map { "\"" + $0 + "\"" }.joined(separator: ",") + "]"
    }

    /// Finite `scores` as a JSON array (Swift's shortest round-tripping form is valid JSON).
    static func json(scores: [Double]) throws -> String {
        guard scores.allSatisfy(\.isFinite) else { return try json(scores) }
        return "[" + scores.map { "\($0)" }.joined(separator: ",") + "]"
    }

    /// `metadata` (a JSON object as text) with `extra`'s keys set; a non-object `metadata` is replaced.
    static func merging(_ extra: [String: Bool], into metadata: String) -> String {
        var object = (try? JSONSerialization.jsonObject(with: Data(metadata.utf8))) as? [String: Any] ?? [:]
        for (key, value) in extra { object[key] = value }
        guard
            let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        else { return metadata }
        return String(decoding: data, as: UTF8.self)
    }
}

extension String {
    /// The text as SQLite can keep it: GRDB binds strings NUL-terminated, so an embedded NUL (valid in JSON as
    /// `\u0000`) would silently cut the rest off. It is stored as U+FFFD instead.
    var storableText: String {
        self.utf8.contains(0) ? self.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : self
    }
}
