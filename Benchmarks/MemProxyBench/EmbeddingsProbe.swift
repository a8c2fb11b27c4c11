import Foundation
import Logging
import MemProxyStore

/// The paraphrase probe: 20 facts, each stored in its own session among 200 distractor turns (LoCoMo turns, read at
/// run time), each asked with a question that shares no content word with it. Lexical recall cannot find them by
/// construction; the probe shows whether a fusion keeps what the vectors found (Hit@5).
struct EmbeddingsProbe {
    let client: EmbeddingsClient
    let depth: Int
    let logger: Logger
    let fusions: (DenseIndex.Encoding) -> [Fusion]
    /// The model name the hybrid store records (``EmbeddingsBenchmark/storeModel``).
    let storeModel: String

    /// (fact, question): generic, written for this probe; no content word in common.
    static let pairs: [(fact: String, question: String)] = [
        ("My cat is called Miso and she turned seven in March.", "What is the name of my pet?"),
        ("I drive a red Toyota to the office every morning.", "What kind of car do I commute in?"),
        ("My sister lives in Lisbon with her husband.", "Where does my sibling reside?"),
        ("I'm allergic to peanuts, so I avoid them completely.", "Which nut gives me a reaction?"),
        ("I started learning the violin last spring.", "Which musical instrument am I studying?"),
        ("Our wedding anniversary falls on the fourteenth of June.", "When did my spouse and I get married?"),
        ("I work as a nurse at the children's hospital.", "What is my job?"),
        ("Spicy Thai green curry is the dish I could eat every day.", "Which food do I like the most?"),
        ("I ran the Berlin marathon in under four hours.", "Which long-distance race did I complete?"),
        ("My daughter is terrified of thunderstorms.", "What weather scares my kid?"),
        ("We adopted a golden retriever puppy named Biscuit.", "What dog did our family get?"),
        ("I'm vegetarian and haven't touched meat since college.", "What diet do I follow regarding animal products?"),
        ("I moved to Denver three years ago for a new position.", "Which city do I currently live in?"),
        ("Grandma taught me how to knit scarves.", "Who showed me the craft of making woolen garments?"),
        ("I broke my left wrist while skiing in January.", "Which bone injury did I suffer on the slopes?"),
        ("My laptop is an old ThinkPad running Debian.", "What computer and operating system do I use?"),
        ("I'm saving up to buy a sailboat next summer.", "What vessel am I putting money aside for?"),
        ("My brother is a firefighter in Chicago.", "What does my male sibling do for a living?"),
        ("I drink two cups of espresso before noon.", "How much coffee do I have each day?"),
        ("One Hundred Years of Solitude is my favourite novel.", "Which book do I love most?"),
    ]

    static let distractorsPerFact = 200

    /// Content words shared by `a` and `b` (lowercased letters, a trailing "s" dropped, short and common words
    /// ignored): the probe's own check that its questions share no word with their facts.
    static func sharedWords(_ a: String, _ b: String) -> Set<String> {
        let common: Set<String> = [
            "the", "and", "for", "with", "what", "which", "who", "where", "when", "how", "does", "did", "have", "her",
            "his", "she", "our", "you", "your", "them", "this", "that", "from", "into", "every", "each", "am", "is",
        ]
        func words(_ text: String) -> Set<String> {
            Set(
                text.lowercased().split(whereSeparator: { !$0.isLetter }).map { word -> String in
                    word.count > 3 && word.hasSuffix("s") ? String(word.dropLast()) : String(word)
                }.filter { $0.count > 2 && !common.contains($0) }
            )
        }
        return words(a).intersection(words(b))
    }

    func run(distractors: [String], cache: inout EmbeddingsCache, dump: inout EmbeddingsDump) async throws {
        guard distractors.count >= Self.distractorsPerFact else { return }
        let speaker = "Robin"
        let facts = Self.pairs.map { "\(speaker): \($0.fact)" }
        try await cache.fill(facts + Self.pairs.map(\.question), client: client)
        for (pair, fact) in zip(Self.pairs, facts) where !Self.sharedWords(fact, pair.question).isEmpty {
            print("probe warning: '\(pair.question)' shares \(Self.sharedWords(fact, pair.question).sorted()) with its fact")
        }

        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteMemoryStore(
            configuration: .init(path: directory.appendingPathComponent("probe.sqlite").path), logger: logger
        )
        let start = Date(timeIntervalSince1970: 1_700_000_000)
        var sessions: [(session: String, factID: String, index: DenseIndex)] = []
        for (number, fact) in facts.enumerated() {
            let session = "probe-\(number + 1)"
            let offset = (number * 997) % distractors.count
            var texts = (0..<Self.distractorsPerFact).map { distractors[(offset + $0) % distractors.count] }
            let position = (number * 37) % (texts.count + 1)
            texts.insert(fact, at: position)
            let memories = texts.enumerated().map { i, text in
                Memory(sessionID: session, type: .episodic, content: text, createdAt: start.addingTimeInterval(Double(i) * 60), source: "import")
            }
            try store.insert(memories)
            var index = DenseIndex(dimensions: cache[fact]!.count)
            for memory in memories { index.append(id: memory.id, vector: cache[memory.content]!) }
            sessions.append((session, memories[position].id, index))
        }

        // The same sessions ranked by the store itself (``EmbeddingsBenchmark/storeHybrid``): vectors through its
        // EmbeddingStore API, each question asked with its vector.
        var hybridConfiguration = SQLiteMemoryStore.Configuration(path: directory.appendingPathComponent("probe.sqlite").path)
        hybridConfiguration.embeddingModel = storeModel
        let hybridStore = try SQLiteMemoryStore(configuration: hybridConfiguration, logger: logger)
        _ = try await hybridStore.useEmbeddingModel(storeModel)
        let vectors = cache
        let fed = try await StoreVectors.feed(hybridStore, model: storeModel, batch: client.batchSize) { vectors[$0.content] }

        var names = ["lexical (default)"] + DenseIndex.Encoding.allCases.map { "dense \($0.rawValue)" }
        names += fusions(.f32).map { "\($0.name) f32" } + fusions(.int8).map { "\($0.name) int8" }
        names.append(EmbeddingsBenchmark.storeRow)
        var hits: [String: Int] = [:]
        var lexicalTop: [Double] = []
        for ((session, factID, index), pair) in zip(sessions, Self.pairs) {
            let candidates = try await store.recall(session: session, query: pair.question, limit: depth)
                .map { (id: $0.memory.id, score: $0.score) }
            if candidates.prefix(5).contains(where: { $0.id == factID }) { hits[names[0], default: 0] += 1 }
            lexicalTop.append(candidates.first?.score ?? 0)
            let query = cache[pair.question]!
            let hybrid = try await hybridStore.context(session: session, query: pair.question, vector: query, limit: 20, proceduralLimit: 0)
            if hybrid.recalled.prefix(5).contains(where: { $0.memory.id == factID }) { hits[EmbeddingsBenchmark.storeRow, default: 0] += 1 }
            for encoding in DenseIndex.Encoding.allCases {
                let scores = index.scores(query, encoding)
                if encoding == .int8, let factRow = index.rows[factID] {
                    dump.addProbe(
                        fact: factRow,
                        lexical: candidates.compactMap { candidate in index.rows[candidate.id].map { (row: $0, score: candidate.score) } },
                        cosines: scores
                    )
                }
                if DenseIndex.top(scores, 5).contains(where: { index.ids[$0] == factID }) {
                    hits["dense \(encoding.rawValue)", default: 0] += 1
                }
                guard encoding != .f16 else { continue }
                for fusion in fusions(encoding) where fusion.rank(lexical: candidates, dense: scores, index: index, depth: depth).prefix(5).contains(factID) {
                    hits["\(fusion.name) \(encoding.rawValue)", default: 0] += 1
                }
            }
        }
        print("")
        print("paraphrase probe: \(Self.pairs.count) facts, each among \(Self.distractorsPerFact) distractor turns, asked with no content word in common")
        print("(\(EmbeddingsBenchmark.storeRow): \(fed.stored) vectors stored through the store's EmbeddingStore API)")
        print("| method | Hit@5 |")
        print("|---|---:|")
        for name in names { print("| \(name) | \(hits[name] ?? 0)/\(Self.pairs.count) |") }
        lexicalTop.sort()
        print(
            "lexical top score over the probe's questions: p10 \(format(percentile(lexicalTop, 0.1), 2)), p50 "
                + "\(format(percentile(lexicalTop, 0.5), 2)), p90 \(format(percentile(lexicalTop, 0.9), 2))"
        )
    }
}
