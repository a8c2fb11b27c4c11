import Foundation
import Logging
import MemProxyStore

/// The row "hybrid (memproxy store)": the same LoCoMo questions ranked by the store itself, the way the proxy ranks
/// them — the database opened with `embeddingModel`, every turn's vector handed to it through its `EmbeddingStore`
/// API (`useEmbeddingModel`, `pendingEmbeddings`, `storeEmbeddings`; the vectors looked up by content in the
/// embeddings cache, no new request), each question asked with `context(session:query:vector:limit:proceduralLimit:)`
/// and its cached vector. It should match the bench's own "cosine-floored(20) w=0.4 int8" (the fusion the store
/// implements, `HybridRanking`).
extension EmbeddingsBenchmark {
    static let storeRow = "hybrid (memproxy store)"
    /// The bench fusion the store implements (with the store's defaults: weight 0.4, floor 20).
    static let storeReference = "cosine-floored(20) w=0.4"

    /// The model name the store records: the model, and its dimensions when set (as memproxy's `[embeddings]` does).
    var storeModel: String { client.model + (client.dimensions.map { "@\($0)" } ?? "") }

    struct StoreRun {
        /// Per question, the memory ids the store recalled (at most 20), best first.
        var ranked: [[String]]
        var fed: StoreVectors.Fed
        var queued: Int
        /// Wall time of each `context` call, milliseconds.
        var times: [Double]

        func report(reference: [[String]]?) {
            let sorted = times.sorted()
            print("")
            print(
                "\(EmbeddingsBenchmark.storeRow): \(queued) memories queued by useEmbeddingModel, \(fed.stored) vectors "
                    + "stored in \(fed.batches) batches in \(format(fed.seconds, 2)) s; context(limit: 20) wall p50 "
                    + "\(format(percentile(sorted, 0.5))) ms, p99 \(format(percentile(sorted, 0.99))) ms"
            )
            guard let reference else {
                print("(the bench's \(EmbeddingsBenchmark.storeReference) int8 was not evaluated: no comparison)")
                return
            }
            var identical = 0
            var sameTop10 = 0
            var sameSet20 = 0
            var firstDifference: [Int] = []
            for (store, bench) in zip(ranked, reference) {
                if store == bench { identical += 1 }
                if Set(store.prefix(10)) == Set(bench.prefix(10)) { sameTop10 += 1 }
                if Set(store) == Set(bench) { sameSet20 += 1 }
                if let at = zip(store, bench).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
                    firstDifference.append(at)
                }
            }
            print(
                "store vs bench \(EmbeddingsBenchmark.storeReference) int8, per question (\(ranked.count)): identical top 20 "
                    + "\(identical), same top-10 set \(sameTop10), same top-20 set \(sameSet20)"
                    + (firstDifference.isEmpty
                        ? ""
                        : "; where they differ, first differing rank p50 \(format(percentile(firstDifference.map(Double.init).sorted(), 0.5), 0)) (0-based)")
            )
        }
    }

    /// Opens the LoCoMo database at `path` as memproxy does with `[embeddings]` on, stores the cached vectors through
    /// the store's API and ranks every question with its vector.
    func storeHybrid(path: String, questions: [Question], cache: EmbeddingsCache, logger: Logger) async throws -> StoreRun {
        var configuration = SQLiteMemoryStore.Configuration(path: path)
        configuration.recall = RecallSettings()
        configuration.embeddingModel = storeModel
        let store = try SQLiteMemoryStore(configuration: configuration, logger: logger)
        let queued = try await store.useEmbeddingModel(storeModel)
        let fed = try await StoreVectors.feed(store, model: storeModel, batch: client.batchSize) { cache[$0.content] }
        var ranked: [[String]] = []
        var times: [Double] = []
        for question in questions {
            guard let vector = cache[question.text] else { throw StoreVectors.MissingVector(content: question.text) }
            let start = ContinuousClock.now
            let context = try await store.context(
                session: question.session, query: question.text, vector: vector, limit: 20, proceduralLimit: 0)
            times.append(milliseconds(ContinuousClock.now - start))
            ranked.append(context.recalled.map(\.memory.id))
        }
        return StoreRun(ranked: ranked, fed: fed, queued: queued, times: times)
    }
}
