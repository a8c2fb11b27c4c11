import Foundation
import GRDB
import Logging
import MemProxyCore
@testable import MemProxyStore
import ServiceLifecycle
import Testing

@Suite struct SQLiteMemoryStoreTests {
    @Test func migratesAFreshFileAndReopensIt() throws {
        let path = try temporaryDatabasePath()
        do {
            let store = try makeStore(path: path)
            #expect(try store.memories(session: "s1").isEmpty)
            try store.insert([memory("the dog is called Rex")])
        }
        let reopened = try makeStore(path: path)
        #expect(try reopened.memories(session: "s1").map(\.content) == ["the dog is called Rex"])
        let applied = try reopened.dbPool.read { db in try Schema.migrator.appliedMigrations(db) }
        #expect(applied == ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10"])
    }

    @Test func theWriterConnectionKeepsMorePagesInMemoryAndCheckpointsLessOftenThanReaders() throws {
        let store = try makeStore()
        let writer = try store.dbPool.write { db in
            (
                try Int.fetchOne(db, sql: "PRAGMA cache_size"), try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint"),
                try Int.fetchOne(db, sql: "PRAGMA temp_store")
            )
        }
        #expect(writer.0 == -SQLiteMemoryStore.writerCacheKiB)
        #expect(writer.1 == SQLiteMemoryStore.walAutocheckpointPages)
        #expect(writer.2 == 2, "statement journals in memory (temp_store = MEMORY)")
        // Readers keep SQLite's defaults: several of them, each with a large cache, would multiply the memory used.
        let reader = try store.dbPool.read { db in try Int.fetchOne(db, sql: "PRAGMA cache_size") }
        #expect(reader != -SQLiteMemoryStore.writerCacheKiB)
    }

    @Test func unopenableFileSaysWhichPathAndWhatToDo() {
        let path = "/nonexistent-\(UUID().uuidString)/memories.sqlite"
        do {
            _ = try makeStore(path: path)
            Issue.record("expected an error")
        } catch let error as MemoryStoreError {
            #expect(error.code == .cannotOpen)
            #expect(error.message.contains(path))
            #expect(error.message.contains("directory exists"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func exchangeBecomesTwoRecallableMemories() async throws {
        let store = try makeStore()
        try await withWriter(store) {
            store.submit(exchange(user: "My dog is called Rex", assistant: "Rex is a lovely name for a dog."))
            store.submit(exchange(user: "I like pizza", assistant: "Pizza is great", incomplete: true, at: 1))
            store.submit(exchange(user: "Only a question about tennis", assistant: nil, at: 2))
            await store.flush()
            let stored = try store.memories(session: "s1")
            #expect(stored.count == 5)
            #expect(stored.allSatisfy { $0.type == .episodic && $0.source == "exchange" })
            let first = stored.filter { $0.content.contains("Rex") }
            #expect(Set(first.compactMap(\.role)) == ["user", "assistant"])
            #expect(Set(first.compactMap(\.exchangeID)).count == 1)
            let pizza = try #require(stored.first { $0.role == "assistant" && $0.content == "Pizza is great" })
            #expect(pizza.metadata == #"{"incomplete":true}"#)
            #expect(stored.filter { $0.content.contains("tennis") }.count == 1)

            let recalled = try await store.recall(session: "s1", query: "what is my dog's name?", limit: 5)
            // Both halves first; the neighbouring exchange follows only through its neighbours' text.
            #expect(recalled.count >= 2)
            #expect(recalled.prefix(2).allSatisfy { $0.memory.content.contains("dog") })
            #expect(recalled.dropFirst(2).allSatisfy { !$0.memory.content.contains("dog") })
        }
    }

    @Test func recallIsSessionScoped() async throws {
        let store = try makeStore()
        try store.insert([
            memory("the secret password is swordfish", session: "A"),
            memory("the secret password is swordfish", session: "A2"),
            memory("unrelated text about gardening", session: "B"),
        ])
        #expect(try await store.recall(session: "B", query: "secret password swordfish", limit: 10).isEmpty)
        #expect(try await store.recall(session: "nobody", query: "secret password swordfish", limit: 10).isEmpty)
        let a = try await store.recall(session: "A", query: "secret password swordfish", limit: 10)
        #expect(a.map(\.memory.sessionID) == ["A"])
        // Many sessions with the same text: each sees only its own.
        try store.insert((0..<50).map { memory("shared words everywhere", session: "many-\($0)") })
        for index in [0, 17, 49] {
            let found = try await store.recall(session: "many-\(index)", query: "shared words", limit: 100)
            #expect(found.map(\.memory.sessionID) == ["many-\(index)"])
        }
    }

    @Test func ranksMoreRelevantFirstAndTiesNewestFirst() async throws {
        // Plain bm25 over each memory's own text (neighbours' text would break the ties on purpose).
        let store = try makeStore { $0.recall = .baseline }
        try store.insert([
            memory("we went to the park on sunday", at: 0),
            memory("my dog Rex loves the park", at: 1),
            memory("Rex is my dog", at: 2),
            memory("I bought a red kite", at: 3),
        ])
        let found = try await store.recall(session: "s1", query: "Where does my dog Rex like to go? The park?", limit: 10)
        #expect(found.first?.memory.content == "my dog Rex loves the park")
        #expect(found.count == 3)
        #expect(zip(found, found.dropFirst()).allSatisfy { $0.score >= $1.score })

        try store.insert([memory("tie breaker phrase", at: 100), memory("tie breaker phrase", at: 200)])
        try store.insert([memory("tie breaker phrase", at: 150)])
        let ties = try await store.recall(session: "s1", query: "tie breaker", limit: 3)
        #expect(ties.map(\.memory.createdAt) == [baseDate + 200, baseDate + 150, baseDate + 100])
    }

    @Test(arguments: [
        #"""#, #""""#, "AND", "OR NOT", "NEAR(", "NEAR(dog cat, 2)", "*", "dog*", "-dog", "content:dog", "^dog",
        "(dog", "dog)", "{content}: dog", "\u{0}", "🐶🐱", "狗的名字", "Ça va? Ünïcödé", "'; DROP TABLE memories; --",
        String(repeating: "dog cat ", count: 1300), String(repeating: "🐶", count: 3000),
    ])
    func hostileQueriesNeverThrow(query: String) async throws {
        let store = try makeStore()
        try store.insert([memory("the dog and the cat are friends"), memory("狗的名字是 Rex 🐶")])
        let found = try await store.recall(session: "s1", query: query, limit: 5)
        #expect(found.count <= 2)
        #expect(found.allSatisfy { $0.memory.sessionID == "s1" })
        #expect(try store.memories(session: "s1").count == 2)
    }

    @Test func stopWordOnlyQueryReturnsNothing() async throws {
        let store = try makeStore()
        try store.insert([memory("what is it that you do"), memory("I am here")])
        #expect(try await store.recall(session: "s1", query: "What is it that you do? I am.", limit: 5).isEmpty)
        #expect(try await store.recall(session: "s1", query: "", limit: 5).isEmpty)
        #expect(try await store.recall(session: "s1", query: "here", limit: 0).isEmpty)
    }

    @Test func retriesWithinTheWindowAreStoredOnce() async throws {
        let store = try makeStore()
        try await withWriter(store) {
            store.submit(exchange(hash: "h1", user: "first question", assistant: "first answer", at: 0))
            store.submit(exchange(hash: "h1", user: "first question", assistant: "first answer", at: 30))
            store.submit(exchange(hash: "h2", user: "other question", assistant: "other answer", at: 31))
            store.submit(exchange(hash: "h1", user: "first question", assistant: "first answer", at: 1000))
            store.submit(exchange(session: "s2", hash: "h1", user: "first question", assistant: "first answer"))
            await store.flush()
        }
        let stored = try store.memories(session: "s1")
        #expect(stored.filter { $0.content == "first question" }.count == 2)  // t=0 and t=1000 (outside window)
        #expect(stored.filter { $0.content == "other question" }.count == 1)
        #expect(try store.memories(session: "s2").count == 2)
    }

    /// Issue 11: the retry completes the cut-short exchange in place; the user message is stored once.
    @Test func aCompleteRetryOfACutShortExchangeCompletesItInPlace() async throws {
        let store = try makeStore()
        try await withWriter(store) {
            store.submit(exchange(hash: "h1", user: "tell me a story", assistant: "Once upon", incomplete: true, at: 0))
            await store.flush()
            // The session's in-memory index is built now (without the incomplete reply): the writer's in-place
            // completion below must make the next recall see the new text.
            let before = try await store.recall(session: "s1", query: "time end story once", limit: 5)
            #expect(before.count == 1)
            // A retry cut short again adds nothing.
            store.submit(exchange(hash: "h1", user: "tell me a story", assistant: "Once", incomplete: true, at: 3))
            store.submit(exchange(hash: "h1", user: "tell me a story", assistant: "Once upon a time, the end.", at: 5))
            // A third attempt after the complete one is a plain retry again.
            store.submit(exchange(hash: "h1", user: "tell me a story", assistant: "Once upon a time, the end.", at: 6))
            await store.flush()
        }
        let stored = try store.memories(session: "s1")
        #expect(stored.map(\.content) == ["tell me a story", "Once upon a time, the end."])
        #expect(stored.allSatisfy { !$0.isIncompleteReply && $0.exchangeID == stored[0].exchangeID })
        // Recall sees the completed reply, not the cut-short one.
        let recalled = try await store.recall(session: "s1", query: "time end story", limit: 5)
        #expect(recalled.map(\.memory.content).sorted() == ["Once upon a time, the end.", "tell me a story"])
    }

    @Test func anIncompleteReplyIsNeverRecalled() async throws {
        let store = try makeStore()
        try await withWriter(store) {
            store.submit(exchange(hash: "h1", user: "what about volcanoes", assistant: "Volcanoes erupt", incomplete: true, at: 0))
            await store.flush()
        }
        // Recall builds the index from the table here (and ranks the same way from the writer's appends).
        let recalled = try await store.recall(session: "s1", query: "volcanoes erupt", limit: 5)
        #expect(recalled.map(\.memory.content) == ["what about volcanoes"])
        #expect(try store.memories(session: "s1").count == 2)
    }

    /// The injection record's id and score arrays are JSON that decodes back to the same values, whatever the ids
    /// hold and however small or large the scores.
    @Test func injectionArraysRoundTrip() throws {
        let cases: [[String]] = [[], ["mem_0123abc"], ["with \"quote\"", "back\\slash", "ünï", "mem_a"]]
        for ids in cases {
            let text = try Writer.json(ids: ids)
            #expect(try JSONDecoder().decode([String].self, from: Data(text.utf8)) == ids)
        }
        let scores = [0, 1e-7, 2.5, 1.25, 123_456_789.125, 1e21, -3.75]
        let text = try Writer.json(scores: scores)
        #expect(try JSONDecoder().decode([Double].self, from: Data(text.utf8)) == scores)
    }

    @Test func injectionsAreRecordedAndReadBack() async throws {
        let store = try makeStore()
        try await withWriter(store) {
            for index in 0..<3 {
                store.submit(
                    InjectionRecord(
                        requestID: "req-\(index)", sessionID: "s1", createdAt: baseDate + Double(index), model: "gpt-x",
                        memoryIDs: ["mem_a", "mem_b"], scores: [2.5, 1.25], tokens: 42, recallMs: 0.75,
                        block: "<memories>…</memories>"
                    )
                )
            }
            await store.flush()
        }
        let records = try store.injections(session: "s1", limit: 2)
        #expect(records.map(\.requestID) == ["req-2", "req-1"])
        #expect(records.first?.memoryIDs == ["mem_a", "mem_b"])
        #expect(records.first?.scores == [2.5, 1.25])
        #expect(records.first?.model == "gpt-x")
        #expect(records.first?.tokens == 42)
        #expect(try store.injections(session: "s2", limit: 10).isEmpty)
    }

    @Test func gracefulShutdownFlushesTheQueue() async throws {
        let path = try temporaryDatabasePath()
        let count = 500
        do {
            let store = try makeStore(path: path) { $0.maxBatch = 16 }
            let group = ServiceGroup(services: [store], logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                for index in 0..<count {
                    store.submit(exchange(user: "question number \(index)", assistant: nil, at: Double(index)))
                }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
        let reopened = try makeStore(path: path)
        #expect(try reopened.memories(session: "s1").count == count)
    }

    @Test func cancellationAlsoFlushes() async throws {
        let path = try temporaryDatabasePath()
        do {
            let store = try makeStore(path: path)
            let writer = Task { try await store.run() }
            for index in 0..<200 {
                store.submit(exchange(user: "note \(index)", assistant: "ok \(index)", at: Double(index)))
            }
            writer.cancel()
            try await writer.value
            await store.flush()  // returns at once: the writer has stopped
        }
        #expect(try makeStore(path: path).memories(session: "s1").count == 400)
    }

    @Test func oneBadItemDoesNotStopTheWriter() async throws {
        let store = try makeStore()
        try await withWriter(store) {
            var bad = exchange(user: "bad", assistant: "half")
            bad.exchangeID = "same-id"
            var duplicate = exchange(user: "dup", assistant: "half")
            duplicate.exchangeID = "same-id"
            store.submit(bad)
            store.submit(duplicate)  // same exchange id: skipped, not fatal
            try await store.dbPool.write { db in
                try db.execute(sql: "CREATE TRIGGER reject BEFORE INSERT ON injections BEGIN SELECT RAISE(ABORT, 'no'); END")
            }
            store.submit(
                InjectionRecord(
                    requestID: "r", sessionID: "s1", createdAt: baseDate, model: nil, memoryIDs: [], scores: [],
                    tokens: 0, recallMs: 0, block: ""
                )
            )
            store.submit(exchange(user: "after the failure", assistant: "still stored", at: 5))
            await store.flush()
        }
        let contents = Set(try store.memories(session: "s1").map(\.content))
        #expect(contents == ["bad", "half", "after the failure", "still stored"])
    }

    @Test func fullTextIndexFollowsUpdatesAndDeletes() async throws {
        let store = try makeStore { $0.recall = .baseline }
        let zebra = memory("a zebra crossed the road")
        try store.insert([zebra, memory("another zebra story")])
        #expect(try await store.recall(session: "s1", query: "zebra", limit: 5).count == 2)

        try await store.dbPool.write { db in
            try db.execute(sql: "UPDATE memories SET content = 'a giraffe crossed the road' WHERE id = ?", arguments: [zebra.id])
        }
        #expect(try await store.recall(session: "s1", query: "zebra", limit: 5).map(\.memory.content) == ["another zebra story"])
        #expect(try await store.recall(session: "s1", query: "giraffe", limit: 5).map(\.memory.id) == [zebra.id])

        try await store.dbPool.write { db in
            try db.execute(sql: "DELETE FROM memories WHERE id = ?", arguments: [zebra.id])
        }
        #expect(try await store.recall(session: "s1", query: "giraffe", limit: 5).isEmpty)
        let integrity = try await store.dbPool.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") }
        #expect(integrity == "ok")
    }

    @Test func sessionOfAMemoryCannotBeMoved() async throws {
        let store = try makeStore()
        try store.insert([memory("pinned to its session")])
        await #expect(throws: (any Error).self) {
            try await store.dbPool.write { db in
                try db.execute(sql: "UPDATE memories SET session_id = 'other'")
            }
        }
    }
}

@Suite struct WriteQueueBoundTests {
    /// At `maxQueuedWrites` a caller waits; it gets `false` when the writer makes no room in time, and is let in
    /// once the writer commits. Nothing submitted is dropped.
    @Test func aFullQueueHoldsCallersUntilTheWriterMakesRoom() async throws {
        let store = try makeStore { $0.maxQueuedWrites = 3 }
        #expect(await store.waitForWriteCapacity(timeout: .seconds(30)))
        for index in 0..<3 {
            store.submit(exchange(user: "note number \(index)", assistant: "noted", at: Double(index)))
        }
        // No writer runs yet: the queue stays full and the wait times out.
        #expect(await store.waitForWriteCapacity(timeout: .milliseconds(20)) == false)
        async let admitted = store.waitForWriteCapacity(timeout: .seconds(60))
        try await withWriter(store) {
            await store.flush()
        }
        #expect(await admitted)
        #expect(try store.memories(session: "s1").count == 6)
        #expect(await store.waitForWriteCapacity(timeout: .seconds(30)))
    }
}

@Suite struct InjectionRetentionTests {
    func injection(_ request: String, daysAgo: Double, now: Date) -> InjectionRecord {
        InjectionRecord(
            requestID: request, sessionID: "s1", createdAt: now - daysAgo * 86_400, model: "m", memoryIDs: [],
            scores: [], tokens: 0, recallMs: 0, block: "<memory>\n</memory>"
        )
    }

    /// Records older than the retention go, oldest first and across several 1,000-row chunks; newer ones stay.
    /// (Pruned as of 40 days from now: the writer's own pass, as of the real now, finds nothing to delete.)
    @Test func oldInjectionRecordsAreDeleted() async throws {
        let now = Date() + 40 * 86_400
        let store = try makeStore { $0.injectionRetentionDays = 30 }
        try await withWriter(store) {
            for index in 0..<2_500 { store.submit(injection("old-\(index)", daysAgo: 45 - Double(index) / 1_000, now: now)) }
            store.submit(injection("edge", daysAgo: 29.9, now: now))
            store.submit(injection("new", daysAgo: 1, now: now))
            await store.flush()
        }
        #expect(try await store.pruneInjections(now: now) == 2_500)
        #expect(try store.injections(session: "s1", limit: 10).map(\.requestID) == ["new", "edge"])
        #expect(try await store.pruneInjections(now: now) == 0)
    }

    /// The writer prunes on its own at its first idle moment.
    @Test func theWriterPrunesWhenIdle() async throws {
        let now = Date()
        let store = try makeStore { $0.injectionRetentionDays = 7 }
        try await store.dbPool.write { db in
            for index in 0..<5 {
                try db.execute(
                    sql: """
                        INSERT INTO injections(request_id, session_id, created_at, model, memory_ids, scores, tokens,
                                               recall_ms, block)
                        VALUES (?, 's1', ?, 'm', '[]', '[]', 0, 0, '')
                        """,
                    arguments: ["old-\(index)", now.timeIntervalSince1970 - 10 * 86_400]
                )
            }
        }
        let remaining = try await withWriter(store) { () async throws -> [String] in
            store.submit(injection("fresh", daysAgo: 0, now: now))
            await store.flush()
            // Poll (bounded) for the idle writer's pass.
            let deadline = ContinuousClock.now + .seconds(30)
            var ids = try store.injections(session: "s1", limit: 10).map(\.requestID)
            while ids.count > 1, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
                ids = try store.injections(session: "s1", limit: 10).map(\.requestID)
            }
            return ids
        }
        #expect(remaining == ["fresh"])
    }

    @Test func zeroKeepsThemForever() async throws {
        let now = Date()
        let store = try makeStore { $0.injectionRetentionDays = 0 }
        try await withWriter(store) {
            store.submit(injection("ancient", daysAgo: 4_000, now: now))
            await store.flush()
        }
        #expect(try await store.pruneInjections(now: now) == 0)
        #expect(try store.injections(session: "s1", limit: 10).count == 1)
    }
}
