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
    let errors: TallyCounter

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
                                       recall_ms, block, api, response_id, query)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [
            injection.requestID, injection.sessionID, injection.createdAt.timeIntervalSince1970, injection.model,
            try Self.json(ids: injection.memoryIDs), try Self.json(scores: injection.scores), injection.tokens,
            injection.recallMs, injection.block, injection.api, injection.responseID, injection.query,
        ])
    }
}

extension String {
    /// The text as SQLite can keep it: GRDB binds strings NUL-terminated, so an embedded NUL (valid in JSON as
    /// `\u0000`) would silently cut the rest off. It is stored as U+FFFD instead.
    var storableText: String {
        self.utf8.contains(0) ? self.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : self
    }
}
