import Foundation
import GRDB
import MemProxyCore
import Testing

@testable import MemProxyStore

/// Recall by meaning on the store (issue 12): vectors beside memories, the queue, hybrid ranking, coherence.
@Suite struct VectorRecallTests {
    /// A deterministic "embedding": one axis per concept (words of one meaning share an axis), plus a small
    /// per-word component, normalised. "kitty" and "cat" are near; "car" and "cat" are not.
    static let concepts: [[String]] = [
        ["cat", "cats", "kitty", "kitten", "pet", "feline", "miso"],
        ["car", "vehicle", "drive", "drives", "truck"],
        ["coffee", "espresso", "latte", "cafe"],
        ["paris", "city", "lives", "live", "moved"],
        ["guitar", "music", "plays", "band"],
    ]
    static let dimensions = 40

    static func embed(_ text: String) -> [Float] {
        var vector = [Float](repeating: 0, count: dimensions)
        for word in text.lowercased().split(whereSeparator: { !$0.isLetter }) {
            if let axis = concepts.firstIndex(where: { $0.contains(String(word)) }) {
                vector[axis] += 1
            } else {
                var hash: UInt32 = 2_166_136_261
                for byte in word.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
                vector[concepts.count + Int(hash % UInt32(dimensions - concepts.count))] += 0.3
            }
        }
        return vector
    }

    static let model = "test-model"

    func makeVectorStore(path: String? = nil) throws -> SQLiteMemoryStore {
        try makeStore(path: path) { $0.embeddingModel = Self.model }
    }

    /// Embeds every queued memory; how many were stored.
    @discardableResult
    func embedAll(_ store: SQLiteMemoryStore, model: String = model) async throws -> Int {
        var stored = 0
        while true {
            let pending = try await store.pendingEmbeddings(limit: 7, session: nil)
            if pending.isEmpty { return stored }
            stored += try await store.storeEmbeddings(pending.map { ($0, Self.embed($0.content)) }, model: model)
        }
    }

    func distractors(_ session: String = "s1", count: Int = 30) -> [Memory] {
        (0..<count).map { memory("note \($0) about the weather report and the train timetable", session: session, at: Double($0)) }
    }

    func hybrid(_ store: SQLiteMemoryStore, _ query: String, session: String = "s1", explain: Bool = false)
        async throws -> [RecalledMemory]
    {
        if explain {
            return try await store.explainedContext(
                session: session, query: query, vector: Self.embed(query), limit: 5, proceduralLimit: 0
            ).recalled
        }
        return try await store.context(
            session: session, query: query, vector: Self.embed(query), limit: 5, proceduralLimit: 0
        ).recalled
    }

    @Test func hybridRecallFindsTheParaphraseLexicalRecallMisses() async throws {
        let store = try makeVectorStore()
        _ = try await store.useEmbeddingModel(Self.model)
        let cat = memory("My cat is called Miso and she is 7", at: 100, type: .semantic)
        try store.insert(distractors() + [cat])
        #expect(try await embedAll(store) == 31)

        let lexical = try await store.context(session: "s1", query: "any kitty news", limit: 5, proceduralLimit: 0)
        #expect(!lexical.recalled.contains { $0.memory.id == cat.id })
        let recalled = try await hybrid(store, "any kitty news", explain: true)
        #expect(recalled.first?.memory.id == cat.id)
        let explanation = try #require(recalled.first?.explanation)
        #expect(explanation.lexical == 0)
        #expect((explanation.dense ?? 0) > 0.5)
        #expect(abs(explanation.score - (recalled.first?.score ?? 0)) < 1e-12)
    }

    @Test func aMemoryWithoutAVectorIsRankedByItsWords() async throws {
        let store = try makeVectorStore()
        _ = try await store.useEmbeddingModel(Self.model)
        try store.insert(distractors())
        try await embedAll(store)
        // Added after the embedder's pass: no vector yet, found by its words alone.
        let guitar = memory("She plays the guitar in a band", at: 200)
        try store.insert([guitar])
        let recalled = try await hybrid(store, "who plays the guitar", explain: true)
        #expect(recalled.first?.memory.id == guitar.id)
        #expect(recalled.first?.explanation?.dense == nil)
        #expect(try await store.queuedEmbeddings(session: "s1") == 1)
    }

    @Test func editsAndDeletesDropVectorsAndTheIndexFollows() async throws {
        let store = try makeVectorStore()
        _ = try await store.useEmbeddingModel(Self.model)
        let cat = memory("My cat is called Miso", at: 100, type: .semantic)
        let car = memory("I drive a red truck", at: 101, type: .semantic)
        try store.insert(distractors() + [cat, car])
        try await embedAll(store)
        #expect(try await hybrid(store, "my kitty").first?.memory.id == cat.id)

        // Edited: the old vector is gone at once (never ranked for the old meaning), the memory is queued again.
        _ = try await store.update(
            session: "s1", id: cat.id, changes: MemoryChanges(content: "My espresso machine is broken", updatedAt: baseDate + 500))
        let afterEdit = try await hybrid(store, "my kitty", explain: true)
        #expect(!afterEdit.contains { $0.memory.id == cat.id && $0.explanation?.dense != nil })
        #expect(try await store.embeddingStatus().queued == 1)
        try await embedAll(store)
        #expect(try await hybrid(store, "a latte at the cafe").first?.memory.id == cat.id)

        // Deleted: vector and queue entry go with it.
        #expect(try await store.delete(session: "s1", id: car.id))
        let status = try await store.embeddingStatus()
        #expect(status.embedded == status.memories && status.queued == 0)
        #expect(try await !hybrid(store, "my vehicle").contains { $0.memory.id == car.id })
    }

    @Test func aVectorForTextThatChangedMeanwhileIsNotStored() async throws {
        let store = try makeVectorStore()
        _ = try await store.useEmbeddingModel(Self.model)
        let cat = memory("My cat is called Miso", type: .semantic)
        try store.insert([cat])
        let pending = try await store.pendingEmbeddings(limit: 10, session: nil)
        _ = try await store.update(session: "s1", id: cat.id, changes: MemoryChanges(content: "I drive a truck", updatedAt: baseDate + 500))
        #expect(try await store.storeEmbeddings(pending.map { ($0, Self.embed($0.content)) }, model: Self.model) == 0)
        let again = try await store.pendingEmbeddings(limit: 10, session: nil)
        #expect(again.map(\.content) == ["I drive a truck"])
    }

    @Test func aModelChangeQueuesEveryMemoryAndStaleVectorsAreNeverRanked() async throws {
        let path = try temporaryDatabasePath()
        let store = try makeVectorStore(path: path)
        // Before embeddings are configured nothing is queued.
        try store.insert(distractors(count: 5))
        #expect(try await store.embeddingStatus().queued == 0)
        #expect(try await store.useEmbeddingModel(Self.model) == 5)
        #expect(try await store.useEmbeddingModel(Self.model) == 0)
        try store.insert([memory("My cat is called Miso", at: 50)])
        #expect(try await embedAll(store) == 6)

        let other = try makeStore(path: path) { $0.embeddingModel = "other-model@64" }
        #expect(try await other.useEmbeddingModel("other-model@64") == 6)
        var status = try await other.embeddingStatus()
        #expect(status.model == "other-model@64" && status.queued == 6 && status.stale == 6 && status.embedded == 0)
        // The old model's vectors are not read: recall is lexical until the new ones are stored.
        #expect(try await hybrid(other, "kitty").isEmpty)
        #expect(try await embedAll(other, model: "other-model@64") == 6)
        status = try await other.embeddingStatus()
        #expect(status.embedded == 6 && status.stale == 0 && status.queued == 0)
        #expect(try await hybrid(other, "kitty").first?.memory.content == "My cat is called Miso")
    }

    @Test func noVectorCrossesSessions() async throws {
        let store = try makeVectorStore()
        _ = try await store.useEmbeddingModel(Self.model)
        try store.insert(distractors("a") + [memory("My kitten Miso is a cat", session: "b", at: 1)])
        try await embedAll(store)
        for _ in 0..<2 {
            let recalled = try await hybrid(store, "my cat Miso", session: "a")
            #expect(recalled.allSatisfy { $0.memory.sessionID == "a" })
            #expect(!recalled.contains { $0.memory.content.contains("kitten") })
        }
        #expect(try await hybrid(store, "my cat", session: "b").map(\.memory.sessionID) == ["b"])
        #expect(try await hybrid(store, "my cat", session: "nobody").isEmpty)
        // Every stored vector sits in its memory's session.
        let misplaced = try await store.dbPool.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM memory_vectors WHERE session_key != seq >> 32")
        }
        #expect(misplaced == 0)
    }

    @Test func aCachedIndexReadsOnlyTheVectorsStoredSince() async throws {
        let store = try makeVectorStore()
        _ = try await store.useEmbeddingModel(Self.model)
        let cat = memory("My cat is called Miso", at: 100)
        try store.insert(distractors() + [cat])
        // The index is built before any vector exists: lexical only.
        #expect(try await !hybrid(store, "kitty").contains { $0.memory.id == cat.id })
        try await embedAll(store)
        #expect(try await hybrid(store, "kitty").first?.memory.id == cat.id)
        let present = try await store.dbPool.read { db in
            try store.recallCache.withIndex(db, session: "s1") { index in (index.vectors.present, [:]) }
        }
        #expect(present == 31)
    }

    @Test func incompleteRepliesAreNotEmbedded() async throws {
        let store = try makeVectorStore()
        _ = try await store.useEmbeddingModel(Self.model)
        var cut = memory("a reply that was cut", at: 1)
        cut.metadata = #"{"incomplete":true}"#
        try store.insert([cut, memory("a whole one", at: 2)])
        let pending = try await store.pendingEmbeddings(limit: 10, session: nil)
        #expect(pending.map(\.content) == ["a whole one"])
        #expect(try await store.embeddingStatus().queued == 1)
    }

    @Test(arguments: [1, 15, 16, 31, 32, 33, 37, 64, 384])
    func exactCosinesMatchFloatArithmetic(dimensions: Int) throws {
        var random = SystemRandomNumberGenerator()
        var vectors = SessionVectors()
        var floats: [[Float]] = []
        for row in 0..<20 {
            vectors.appendRow()
            let vector = (0..<dimensions).map { _ in Float.random(in: -1...1, using: &random) }
            floats.append(vector)
            if row != 7 { vectors.set(row: row, try #require(CompactVector(quantizing: vector))) }
        }
        let query = (0..<dimensions).map { _ in Float.random(in: -1...1, using: &random) }
        let compactQuery = try #require(CompactVector(quantizing: query))
        let cosines = try #require(vectors.cosines(compactQuery))
        // The AVX2 build (when this CPU has it) and the plain C one agree bit for bit.
        #expect(vectors.cosines(compactQuery, simd: false) == cosines)
        func norm(_ v: [Float]) -> Float { v.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        for row in 0..<20 {
            guard row != 7 else {
                #expect(cosines[row] == 0 && !vectors.has(row))
                continue
            }
            let exact = zip(floats[row], query).reduce(Float(0)) { $0 + $1.0 * $1.1 } / (norm(floats[row]) * norm(query))
            #expect(abs(cosines[row] - exact) < 0.03, "row \(row): \(cosines[row]) vs \(exact)")
        }
        let short = try #require(CompactVector(quantizing: [1, 2]))
        #expect(vectors.cosines(short) == nil)
        #expect(CompactVector(quantizing: []) == nil && CompactVector(quantizing: [1, .nan]) == nil)
    }
}
