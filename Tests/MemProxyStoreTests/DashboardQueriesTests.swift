import Foundation
import GRDB
import Testing

@testable import MemProxyStore

@Suite struct DashboardQueriesTests {
    @Test func anEmptyDatabaseHasNoRowsAndZeroCounts() async throws {
        let store = try makeStore()
        let sessions = try await store.sessionSummaries(prefix: nil, limit: 10, after: nil)
        #expect(sessions == DashboardSessionPage(sessions: [], nextCursor: nil))
        let page = try await store.recentInjections(filter: DashboardInjectionFilter(), limit: 10, before: nil)
        #expect(page.injections.isEmpty && page.nextCursor == nil)
        #expect(try await store.injections(afterSequence: 0, limit: 10).isEmpty)
        #expect(try await store.latestInjectionSequence() == 0)
        let zero = MemoryTypeCounts(episodic: 0, semantic: 0, procedural: 0)
        #expect(
            try await store.dashboardCounts()
                == DashboardCounts(sessions: 0, memories: zero, injectionRecordsAtMost: 0, latestInjectionSequence: 0))
    }

    /// Ids full of LIKE and GLOB metacharacters, case variants, decomposed accents and the last code point.
    static let trickyIDs = [
        "a", "A", "ab", "aB", "a%b", "a_b", "a*", "a?", "a[1]", "a\\", "a\u{10FFFF}", "a\u{10FFFF}x", "b", "%", "%%",
        "_x", "[x", "*", "e", "é", "e\u{301}x", "ü-1", "ü-2", "日本", "日本語", "\u{D7FF}", "\u{E000}", "\u{10FFFF}",
    ]

    @Test(arguments: [
        nil, "", "a", "A", "a%", "%", "_", "a_", "[", "a[", "*", "a*", "?", "a\\", "e", "é", "ü", "ü-", "日本",
        "a\u{10FFFF}", "\u{10FFFF}", "\u{D7FF}", "zzz", "a\u{0}",
    ])
    func prefixMatchesExactlyTheIdsStartingWithItsBytes(prefix: String?) async throws {
        let store = try makeStore()
        for id in Self.trickyIDs { try await store.add(memory("m", session: id)) }
        let expected = Self.trickyIDs
            .filter { prefix?.utf8.contains(0) != true && $0.utf8.starts(with: (prefix ?? "").utf8) }
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        // One page, and pages of two through a cursor token: the same ids, no repeats, no gaps.
        let all = try await store.sessionSummaries(prefix: prefix, limit: 100, after: nil)
        #expect(all.sessions.map(\.sessionID) == expected && all.nextCursor == nil)
        var seen: [String] = []
        var cursor: SessionCursor?
        var pages = 0
        repeat {
            let page = try await store.sessionSummaries(prefix: prefix, limit: 2, after: cursor)
            #expect(page.sessions.count <= 2)
            seen += page.sessions.map(\.sessionID)
            cursor = page.nextCursor.flatMap { SessionCursor(token: $0.token) }
            pages += 1
        } while cursor != nil && pages < 50
        #expect(seen == expected)
    }

    @Test func prefixUpperBoundRaisesTheLastScalarAndCarries() {
        #expect(SQLiteMemoryStore.prefixUpperBound("a") == "b")
        #expect(SQLiteMemoryStore.prefixUpperBound("a\u{10FFFF}") == "b")
        #expect(SQLiteMemoryStore.prefixUpperBound("\u{D7FF}") == "\u{E000}")
        #expect(SQLiteMemoryStore.prefixUpperBound("\u{10FFFF}\u{10FFFF}") == nil)
    }

    @Test func aCursorBeforeThePrefixStartsAtThePrefix() async throws {
        let store = try makeStore()
        for id in ["a1", "b1", "b2", "c1"] { try await store.add(memory("m", session: id)) }
        let page = try await store.sessionSummaries(prefix: "b", limit: 10, after: SessionCursor(sessionID: "a1"))
        #expect(page.sessions.map(\.sessionID) == ["b1", "b2"])
        let later = try await store.sessionSummaries(prefix: "b", limit: 10, after: SessionCursor(sessionID: "b1"))
        #expect(later.sessions.map(\.sessionID) == ["b2"])
    }

    @Test func countsByTypeFollowAddsDeletesAndTypeChanges() async throws {
        let store = try makeStore()
        let types: [MemoryType] = [.episodic, .episodic, .episodic, .semantic, .semantic, .procedural]
        let s1 = types.enumerated().map {
            memory("s1 \($0.offset)", session: "s1", at: Double($0.offset), type: $0.element)
        }
        for m in s1 { try await store.add(m) }
        try await store.add(memory("s2 fact", session: "s2", at: 100, type: .semantic))
        try await store.add(memory("s3 rule", session: "s3", at: 5, type: .procedural))
        try await withWriter(store) {
            store.submit(sampleInjection("r1", session: "s1", at: 50))
            store.submit(sampleInjection("r2", session: "s3", at: 1))
            await store.flush()
        }
        #expect(try await store.delete(session: "s1", id: s1[3].id))
        #expect(
            try await store.update(session: "s1", id: s1[0].id, changes: .init(type: .procedural, updatedAt: baseDate))
                != nil)

        let page = try await store.sessionSummaries(prefix: nil, limit: 10, after: nil)
        #expect(
            page.sessions.map(\.memoryCounts) == [
                MemoryTypeCounts(episodic: 2, semantic: 1, procedural: 2),
                MemoryTypeCounts(episodic: 0, semantic: 1, procedural: 0),
                MemoryTypeCounts(episodic: 0, semantic: 0, procedural: 1),
            ])
        #expect(page.sessions.map(\.memoryCounts) == (try groundTruth(store, sessions: ["s1", "s2", "s3"])))
        // The later of the newest memory and the newest injection.
        #expect(page.sessions.map(\.lastActivity) == [baseDate + 50, baseDate + 100, baseDate + 5])

        let counts = try await store.dashboardCounts()
        #expect(counts.sessions == 3)
        #expect(counts.memories == MemoryTypeCounts(episodic: 2, semantic: 2, procedural: 3))
        #expect(counts.injectionRecordsAtMost == 2)
        #expect(counts.latestInjectionSequence == (try await store.latestInjectionSequence()))
        #expect(counts.latestInjectionSequence > 0)
    }

    /// Twelve records over three sessions and two APIs, dated out of `seq` order, one request id used twice.
    static func seedInjections(_ store: SQLiteMemoryStore) async throws -> [StoredInjection] {
        try await withWriter(store) {
            for n in 0..<12 {
                store.submit(
                    sampleInjection(
                        n == 7 ? "req_3" : "req_\(n)", session: ["s1", "s2", "s3"][n % 3], at: Double((n * 5) % 12),
                        api: n % 4 == 1 ? "responses" : "chat.completions"))
            }
            await store.flush()
        }
        let all = try await store.injections(afterSequence: 0, limit: 100)
        #expect(all.count == 12)
        return all
    }

    @Test(arguments: [
        DashboardInjectionFilter(),
        DashboardInjectionFilter(session: "s2"),
        DashboardInjectionFilter(requestID: "req_3"),
        DashboardInjectionFilter(api: "responses"),
        DashboardInjectionFilter(session: "s2", api: "responses"),
        DashboardInjectionFilter(session: "s1", requestID: "req_3"),
        DashboardInjectionFilter(requestID: "req_3", api: "responses"),
        DashboardInjectionFilter(session: "nobody"),
        DashboardInjectionFilter(api: "messages"),
    ])
    func recentInjectionsAreNewestFirstFilteredAndPaged(filter: DashboardInjectionFilter) async throws {
        let store = try makeStore()
        let all = try await Self.seedInjections(store)
        let expected = all.reversed().filter { stored in
            let record = stored.record
            return (filter.session.map { $0 == record.sessionID } ?? true)
                && (filter.requestID.map { $0 == record.requestID } ?? true)
                && (filter.api.map { $0 == record.api } ?? true)
        }
        let whole = try await store.recentInjections(filter: filter, limit: 100, before: nil)
        #expect(whole.injections.map(\.sequence) == expected.map(\.sequence) && whole.nextCursor == nil)
        var seen: [Int64] = []
        var cursor: Int64?
        var pages = 0
        repeat {
            let page = try await store.recentInjections(filter: filter, limit: 2, before: cursor)
            #expect(page.injections.count <= 2)
            seen += page.injections.map(\.sequence)
            cursor = page.nextCursor
            pages += 1
        } while cursor != nil && pages < 20
        #expect(seen == expected.map(\.sequence))
    }

    @Test func recordsComeBackWhole() async throws {
        let store = try makeStore()
        var record = sampleInjection("req_x", session: "s9", at: 3, api: "responses")
        record.responseID = "resp_1"
        record.query = "what is my dog called"
        try await withWriter(store) {
            store.submit(record)
            await store.flush()
        }
        let page = try await store.recentInjections(filter: .init(requestID: "req_x"), limit: 1, before: nil)
        let got = try #require(page.injections.first?.record)
        #expect(got.sessionID == "s9" && got.createdAt == baseDate + 3 && got.model == "m")
        #expect(got.memoryIDs == ["m1", "m2"] && got.scores == [0.5, 0.25] && got.tokens == 7 && got.recallMs == 1.5)
        #expect(got.block == "<memory>req_x</memory>" && got.api == "responses")
        #expect(got.responseID == "resp_1" && got.query == "what is my dog called")
    }

    @Test func aLiveViewPollsEveryNewRecordOnceInOrder() async throws {
        let store = try makeStore()
        #expect(try await store.latestInjectionSequence() == 0)
        let first = try await Self.seedInjections(store)
        let start = try await store.latestInjectionSequence()
        #expect(start == first.last?.sequence)
        #expect(try await store.injections(afterSequence: start, limit: 10).isEmpty)
        // Oldest first, in batches.
        let batch = try await store.injections(afterSequence: first[3].sequence, limit: 5)
        #expect(batch.map(\.sequence) == first[4..<9].map(\.sequence))
        // Records stored after the view started: each comes once, in order (the writer runs only once per store,
        // so these go in directly, as the writer would).
        try await store.dbPool.write { db in
            for id in ["late_1", "late_2"] {
                try db.execute(
                    sql: """
                        INSERT INTO injections(request_id, session_id, created_at, memory_ids, scores, tokens, recall_ms,
                                               block)
                        VALUES (?, 's1', 0, '[]', '[]', 1, 0, '')
                        """, arguments: [id])
            }
        }
        let new = try await store.injections(afterSequence: start, limit: 10)
        #expect(new.map(\.record.requestID) == ["late_1", "late_2"])
        #expect(try await store.latestInjectionSequence() == new.last?.sequence)
        #expect(try await store.injections(afterSequence: start, limit: 1).map(\.record.requestID) == ["late_1"])
    }

    /// The pages stay index walks: no sort of a filter's rows, no scan of a table where an index bounds the read.
    @Test func queryPlansWalkIndexesInOrder() async throws {
        let store = try makeStore()
        let filters = [
            DashboardInjectionFilter(), DashboardInjectionFilter(session: "s"),
            DashboardInjectionFilter(requestID: "r"),
            DashboardInjectionFilter(api: "responses"), DashboardInjectionFilter(session: "s", api: "responses"),
        ]
        for filter in filters {
            let (sql, arguments) = SQLiteMemoryStore.recentInjectionsSQL(filter: filter, limit: 10, before: 99)
            let plan = try plan(store, sql, arguments)
            #expect(!plan.contains("TEMP B-TREE"), "\(filter): \(plan)")
            if filter != DashboardInjectionFilter() {
                #expect(plan.contains("USING INDEX") || plan.contains("USING COVERING INDEX"), "\(filter): \(plan)")
            }
        }
        let (sql, arguments) = try #require(
            SQLiteMemoryStore.sessionSummariesSQL(prefix: "ab", limit: 10, after: SessionCursor(sessionID: "abc")))
        let sessions = try plan(store, sql, arguments)
        #expect(
            sessions.contains(
                "sqlite_autoindex_sessions_1 (session_id>? AND session_id<?)"),
            "\(sessions)")
        #expect(sessions.contains("memories_semantic") && sessions.contains("memories_procedural"), "\(sessions)")
        #expect(!sessions.contains("SCAN memories") && !sessions.contains("TEMP B-TREE"), "\(sessions)")
        let counts = try plan(
            store, "SELECT count(*) FROM memories WHERE type = 'semantic'", [])
        #expect(counts.contains("memories_semantic"), "\(counts)")
    }

    /// Timings at the issue's scale (10,000 sessions, ~1,000,000 memories with one session of 100,000, 1,000,000
    /// injection records), with and without v10's indexes. Slow to seed (about a minute): run it on purpose with
    /// `MEMPROXY_DASHBOARD_BENCH=1 swift test --skip-build --filter DashboardQueriesTests/benchmark`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["MEMPROXY_DASHBOARD_BENCH"] != nil))
    func benchmark() async throws {
        let store = try makeStore()
        try await store.dbPool.write { db in
            try db.execute(
                sql: """
                    WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 10000)
                    INSERT INTO sessions(key, session_id) SELECT n, printf('user-%05d', n) FROM k;
                    WITH RECURSIVE m(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM m WHERE n < 999999)
                    INSERT INTO memories(seq, id, session_id, type, role, content, created_at, updated_at, source,
                                         content_hash)
                    SELECT (key << 32) | n, 'mem_' || n, printf('user-%05d', key),
                           CASE WHEN n % 100 < 5 THEN 'semantic' WHEN n % 100 = 5 THEN 'procedural' ELSE 'episodic' END,
                           'user', 'the user said something about topic ' || n, 1.7e9 + n, 1.7e9 + n, 'exchange', 'h'
                    FROM (SELECT n, CASE WHEN n < 100000 THEN 5000 ELSE 1 + n % 10000 END AS key FROM m);
                    WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n < 999999)
                    INSERT INTO injections(request_id, session_id, created_at, memory_ids, scores, tokens, recall_ms,
                                           block, api)
                    SELECT 'req_' || n, printf('user-%05d', CASE WHEN n % 10 = 0 THEN 5000 ELSE 1 + n % 9973 END),
                           1.7e9 + n, '["a","b"]', '[1,0.5]', 120, 0.4, printf('%.600c', 'x'),
                           CASE WHEN n % 1000 = 7 THEN 'messages' WHEN n % 50 = 1 THEN 'responses'
                                ELSE 'chat.completions' END
                    FROM i;
                    ANALYZE;
                    """)
        }
        let latest = try await store.latestInjectionSequence()
        func time(_ name: String, _ body: () async throws -> Void) async throws {
            var samples: [Double] = []
            for _ in 0..<50 {
                let start = ContinuousClock.now
                try await body()
                let elapsed = ContinuousClock.now - start
                samples.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1e3)
            }
            samples.sort()
            print("| \(name) | \(String(format: "%.2f", samples[25])) | \(String(format: "%.2f", samples[49])) |")
        }
        func run(_ label: String) async throws {
            print("\n\(label)\n| query (limit 50) | p50 ms | max ms |\n|---|---|---|")
            try await time("sessions, first page") {
                _ = try await store.sessionSummaries(prefix: nil, limit: 50, after: nil)
            }
            let cursor = SessionCursor(sessionID: "user-04990")
            try await time("sessions, page with the 100k session") {
                _ = try await store.sessionSummaries(prefix: nil, limit: 50, after: cursor)
            }
            try await time("sessions, prefix user-05") {
                _ = try await store.sessionSummaries(prefix: "user-05", limit: 50, after: nil)
            }
            for (name, filter) in [
                ("injections, newest", DashboardInjectionFilter()),
                ("injections, session of 100k records", DashboardInjectionFilter(session: "user-05000")),
                ("injections, session of ~90 records", DashboardInjectionFilter(session: "user-00042")),
                ("injections, api = messages (0.1%)", DashboardInjectionFilter(api: "messages")),
                ("injections, request id", DashboardInjectionFilter(requestID: "req_123456")),
            ] {
                try await time(name) { _ = try await store.recentInjections(filter: filter, limit: 50, before: nil) }
            }
            try await time("injections, deep page (before seq 10)") {
                _ = try await store.recentInjections(filter: DashboardInjectionFilter(), limit: 50, before: 10)
            }
            try await time("live: after latest - 50") {
                _ = try await store.injections(afterSequence: latest - 50, limit: 100)
            }
            try await time("latestInjectionSequence") { _ = try await store.latestInjectionSequence() }
            try await time("dashboardCounts") { _ = try await store.dashboardCounts() }
        }
        try await run("With v10")
        try await store.dbPool.write { db in
            try db.execute(
                sql: "DROP INDEX injections_session; DROP INDEX injections_api; DROP INDEX memories_semantic")
        }
        try await run("Without v10's indexes")
    }

    private func plan(_ store: SQLiteMemoryStore, _ sql: String, _ arguments: StatementArguments) throws -> String {
        try store.dbPool.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: arguments)
                .map { $0["detail"] as String }.joined(separator: "\n")
        }
    }

    private func groundTruth(_ store: SQLiteMemoryStore, sessions: [String]) throws -> [MemoryTypeCounts] {
        try store.dbPool.read { db in
            try sessions.map { session in
                func count(_ type: String) throws -> Int {
                    try Int.fetchOne(
                        db, sql: "SELECT count(*) FROM memories WHERE session_id = ? AND type = ?",
                        arguments: [session, type]) ?? -1
                }
                return MemoryTypeCounts(
                    episodic: try count("episodic"), semantic: try count("semantic"),
                    procedural: try count("procedural"))
            }
        }
    }
}

private func sampleInjection(_ requestID: String, session: String, at offset: Double, api: String = "chat.completions")
    -> InjectionRecord
{
    InjectionRecord(
        requestID: requestID, sessionID: session, createdAt: baseDate + offset, model: "m", memoryIDs: ["m1", "m2"],
        scores: [0.5, 0.25], tokens: 7, recallMs: 1.5, block: "<memory>\(requestID)</memory>", api: api)
}
