import Foundation
import GRDB
import Testing

@testable import MemProxyStore

/// Recall without a database read: the writer hands what it commits to the cache, and the WAL commit counter tells
/// whether anyone else committed since (``RecallIndexCache``).
@Suite("Recall from memory alone")
struct RecallFromMemoryTests {
    /// Recalls `query` in `session` and returns the contents, with how the recall was answered.
    private func recall(_ store: SQLiteMemoryStore, _ query: String, session: String = "s1") async throws
        -> (contents: [String], fromMemory: Bool)
    {
        let before = store.recallCache.recallCounts
        let recalled = try await store.recall(session: session, query: query, limit: 8)
        let after = store.recallCache.recallCounts
        return (recalled.map(\.memory.content), after.memory > before.memory)
    }

    @Test func theWriterHandsItsCommitsToTheCache() async throws {
        let store = try makeStore(configure: { $0.warmsRecallIndex = false })
        try await withWriter(store) {
            store.submit(exchange(user: "My dog is called Rex", assistant: "Rex is a fine name"))
            await store.flush()
            // The first recall builds the session's index from the table.
            #expect(try await recall(store, "dog").fromMemory == false)
            store.submit(exchange(user: "My sister lives in Lisbon", assistant: "Lisbon is lovely", at: 1))
            await store.flush()
            let answer = try await recall(store, "where does my sister live")
            #expect(answer.fromMemory)
            #expect(answer.contents.first == "My sister lives in Lisbon")
            #expect(answer.contents.contains("Lisbon is lovely"))
        }
    }

    @Test func anotherProcessesCommitsAreSeenAtOnce() async throws {
        let path = try temporaryDatabasePath()
        let store = try makeStore(path: path, configure: { $0.warmsRecallIndex = false })
        try await withWriter(store) {
            store.submit(exchange(user: "The vault code is 9031", assistant: "Noted"))
            await store.flush()
            _ = try await recall(store, "vault code")
            store.submit(exchange(user: "The garage code is 4417", assistant: "Noted too", at: 1))
            await store.flush()
            #expect(try await recall(store, "garage code").fromMemory)

            // Another store on the same file: its own connections, as the CLI in another process would have.
            let other = try makeStore(path: path, configure: { $0.warmsRecallIndex = false })
            let added = Memory(
                sessionID: "s1", type: .semantic, role: nil, content: "The boat code is 7702", createdAt: baseDate + 2,
                source: "import")
            try await other.add(added)
            let afterAdd = try await recall(store, "boat code")
            #expect(!afterAdd.fromMemory)
            #expect(afterAdd.contents.first == "The boat code is 7702")
            // Verified again by that read: the next recall needs none.
            #expect(try await recall(store, "boat code").fromMemory)

            let vault = try #require(try store.memories(session: "s1").first { $0.content.contains("vault") })
            #expect(try await other.delete(session: "s1", id: vault.id))
            let afterDelete = try await recall(store, "vault code")
            #expect(!afterDelete.fromMemory)
            #expect(!afterDelete.contents.contains("The vault code is 9031"))

            // And the writer's next commit is appended again.
            store.submit(exchange(user: "The bike lock code is 5120", assistant: "Got it", at: 3))
            await store.flush()
            _ = try await recall(store, "lock code")
            store.submit(exchange(user: "The shed code is 3388", assistant: "Okay", at: 4))
            await store.flush()
            let shed = try await recall(store, "shed code")
            #expect(shed.fromMemory)
            #expect(shed.contents.first == "The shed code is 3388")
        }
    }

    @Test func editsThroughTheMemoryAPIAreSeenAtOnce() async throws {
        let store = try makeStore(configure: { $0.warmsRecallIndex = false })
        try await withWriter(store) {
            store.submit(exchange(user: "My favourite colour is teal", assistant: "Teal it is"))
            await store.flush()
            _ = try await recall(store, "favourite colour")
            #expect(try await recall(store, "favourite colour").fromMemory)
            let teal = try #require(try store.memories(session: "s1").first { $0.content.contains("favourite") })
            let changes = MemoryChanges(content: "My favourite colour is crimson", updatedAt: baseDate + 10)
            _ = try await store.update(session: "s1", id: teal.id, changes: changes)
            let answer = try await recall(store, "favourite colour")
            #expect(!answer.fromMemory)
            #expect(answer.contents.first == "My favourite colour is crimson")
            #expect(!answer.contents.contains("My favourite colour is teal"))
        }
    }

    @Test func aCommitAfterTheReadSnapshotIsNotMistakenForItsState() async throws {
        // GRDB takes a read transaction's snapshot before handing the connection over, so the commit counter that
        // vouches for the snapshot must be read before the read begins: a commit that lands after the snapshot but
        // before the session's row is read must leave the index stale.
        let path = try temporaryDatabasePath()
        let store = try makeStore(path: path, configure: { $0.warmsRecallIndex = false })
        let other = try makeStore(path: path, configure: { $0.warmsRecallIndex = false })
        try store.insert([memory("The kayak is red")])
        _ = try await recall(store, "kayak")
        #expect(try await recall(store, "kayak").fromMemory)
        let cache = store.recallCache
        let before = cache.commitCounter()
        try readNow(store.dbPool) { db in
            try other.insert([memory("The canoe is green", at: 1)])
            _ = try cache.withIndex(db, session: "s1", commitsBefore: before) { _ in ((), [:]) }
        }
        let answer = try await recall(store, "canoe")
        #expect(answer.contents.first == "The canoe is green")
    }

    @Test func underConcurrentWritesRecallsAndEditsTheCacheEndsAsTheTable() async throws {
        // The writer stores exchanges, recalls run (from memory or not) and another store on the file adds, edits and
        // deletes memories, all at once. Afterwards every session answers exactly as indexes built from the table do:
        // no index is left marked current while missing a commit.
        let path = try temporaryDatabasePath()
        let store = try makeStore(path: path, configure: { $0.warmsRecallIndex = false })
        let other = try makeStore(path: path, configure: { $0.warmsRecallIndex = false })
        let words = ["otter", "maple", "harbor", "violin", "lantern", "quartz", "meadow", "falcon", "cobalt", "ember"]
        let sessions = ["a", "b", "c", "d"]
        func sentence(_ random: inout SeededRandom, _ count: Int) -> String {
            (0..<count).map { _ in words[Int(random.next() % UInt64(words.count))] }.joined(separator: " ")
        }
        try await withWriter(store) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    var random = SeededRandom(seed: 1)
                    for step in 0..<300 {
                        let session = sessions[step % sessions.count]
                        store.submit(
                            exchange(
                                session: session, user: sentence(&random, 5), assistant: sentence(&random, 3),
                                at: Double(step)))
                        if step % 25 == 0 { await store.flush() }
                    }
                }
                for reader in 0..<2 {
                    group.addTask {
                        var random = SeededRandom(seed: 10 + UInt64(reader))
                        for step in 0..<300 {
                            _ = try await store.recall(
                                session: sessions[step % sessions.count], query: sentence(&random, 2), limit: 5)
                        }
                    }
                }
                group.addTask {
                    var random = SeededRandom(seed: 20)
                    for step in 0..<40 {
                        let session = sessions[Int(random.next() % UInt64(sessions.count))]
                        let existing = try other.memories(session: session)
                        switch step % 3 {
                        case 0:
                            try await other.add(
                                Memory(
                                    sessionID: session, type: .semantic, role: nil, content: sentence(&random, 4),
                                    createdAt: baseDate + 1_000 + Double(step), source: "import"))
                        case 1:
                            if let victim = existing.randomElement(using: &random) {
                                _ = try await other.delete(session: session, id: victim.id)
                            }
                        default:
                            if let target = existing.randomElement(using: &random) {
                                _ = try await other.update(
                                    session: session, id: target.id,
                                    changes: MemoryChanges(content: sentence(&random, 6), updatedAt: baseDate + 2_000))
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            await store.flush()
            // Last, with every index current: edits by the other store that no commit of the writer follows.
            var random = SeededRandom(seed: 30)
            for session in sessions { _ = try await store.recall(session: session, query: "otter", limit: 1) }
            for session in sessions {
                if let victim = try other.memories(session: session).first {
                    _ = try await other.delete(session: session, id: victim.id)
                }
                try await other.add(
                    Memory(
                        sessionID: session, type: .semantic, role: nil, content: "otter " + sentence(&random, 3),
                        createdAt: baseDate + 5_000, source: "import"))
            }
            let rebuilt = try makeStore(path: path, configure: { $0.warmsRecallIndex = false })
            for session in sessions {
                for _ in 0..<10 {
                    let query = sentence(&random, 2)
                    let live = try await store.recall(session: session, query: query, limit: 8)
                    let expected = try await rebuilt.recall(session: session, query: query, limit: 8)
                    #expect(live.map(\.memory.id) == expected.map(\.memory.id), "session \(session), query \(query)")
                    #expect(live.map(\.memory.content) == expected.map(\.memory.content))
                }
            }
            #expect(store.recallCache.recallCounts.memory > 0)
        }
    }

    @Test func indexesExtendedByTheWriterRankLikeIndexesBuiltFromTheTable() async throws {
        let path = try temporaryDatabasePath()
        let store = try makeStore(path: path, configure: { $0.warmsRecallIndex = false })
        var random = SeededRandom(seed: 7)
        let words = [
            "garden", "piano", "travel", "budget", "recipe", "marathon", "python", "weekend", "paris", "coffee",
            "novel", "hiking", "sister", "tennis", "kitchen", "museum", "Zoë", "naïve", "東京", "🎉",
        ]
        func sentence(_ count: Int) -> String {
            (0..<count).map { _ in words[Int(random.next() % UInt64(words.count))] }.joined(separator: " ")
        }
        let sessions = ["a", "b", "c"]
        let queries = (0..<30).map { _ in sentence(3) }
        /// Every session's answer to every query: ids, scores, texts and dates.
        func answers(_ store: SQLiteMemoryStore) async throws -> [[String]] {
            var results: [[String]] = []
            for session in sessions {
                for query in queries {
                    let recalled = try await store.recall(session: session, query: query, limit: 8)
                    results.append(
                        recalled.map { "\($0.memory.id) \($0.score) \($0.memory.content) \($0.memory.createdAt)" })
                }
            }
            return results
        }
        let live = try await withWriter(store) { () -> [[String]] in
            for session in sessions { store.submit(exchange(session: session, user: sentence(5), assistant: "ok")) }
            await store.flush()
            for session in sessions { _ = try await store.recall(session: session, query: "garden", limit: 1) }
            for step in 0..<120 {
                let session = sessions[step % sessions.count]
                // Long texts (the neighbour columns keep their first 512 characters), NUL (stored as U+FFFD), days
                // apart (date columns), replies cut short and missing.
                let long = step % 17 == 0 ? sentence(150) : sentence(4 + step % 9)
                let user = step % 23 == 0 ? long + "\u{0}" + sentence(2) : long
                let reply: String? = step % 11 == 0 ? nil : sentence(3 + step % 5)
                store.submit(
                    exchange(
                        session: session, user: user, assistant: reply, incomplete: step % 13 == 0,
                        at: Double(step) * 20_000))
                if step % 7 == 0 { await store.flush() }
            }
            await store.flush()
            return try await answers(store)
        }
        #expect(store.recallCache.recallCounts.memory >= sessions.count * queries.count)
        // A second store on the file builds every index from the table.
        let rebuilt = try makeStore(path: path, configure: { $0.warmsRecallIndex = false })
        let results = try await answers(rebuilt)
        // (Its first recall of each session read the table; the others needed no read.)
        #expect(rebuilt.recallCache.recallCounts.database >= sessions.count)
        #expect(results.count == live.count)
        let differing = zip(results, live).enumerated().filter { $0.element.0 != $0.element.1 }
        #expect(differing.isEmpty, "first differing query: \(differing.first.map { "\($0.offset)" } ?? "none")")
        #expect(results.contains { !$0.isEmpty })
    }
}

/// A synchronous read (GRDB's async form would be chosen in an async context).
private func readNow(_ pool: DatabasePool, _ body: (Database) throws -> Void) throws {
    try pool.read(body)
}

@Suite("WAL header probe")
struct WALHeaderProbeTests {
    @Test func countsEveryCommitOfEveryConnection() throws {
        let path = try temporaryDatabasePath()
        let pool = try DatabasePool(path: path)
        try pool.write { try $0.execute(sql: "CREATE TABLE t(x)") }
        let probe = try #require(WALHeaderProbe(databasePath: path))
        let start = try #require(probe.read()).change
        try pool.write { try $0.execute(sql: "INSERT INTO t VALUES (1)") }
        #expect(probe.read()?.change == start &+ 1)
        let other = try DatabaseQueue(path: path)
        try other.write { try $0.execute(sql: "INSERT INTO t VALUES (2)") }
        #expect(probe.read()?.change == start &+ 2)
        // A read, or a transaction that changes nothing, is not a commit.
        _ = try pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM t") }
        try pool.write { try $0.execute(sql: "UPDATE t SET x = 3 WHERE x = 99") }
        #expect(probe.read()?.change == start &+ 2)
    }

    @Test func noWALNoProbe() throws {
        #expect(WALHeaderProbe(databasePath: try temporaryDatabasePath()) == nil)
    }
}
