import Foundation
import Logging
import MemProxyStore

/// `MemProxyBench locomo --embeddings URL --embeddings-model NAME`: lexical recall (the store's default
/// configuration, through the same `recall(session:query:limit:)` as `LoCoMoBenchmark`), dense recall (exact cosine
/// over the session's turns: float32, float16, int8 with a scale) and their fusions on the LoCoMo dev half; then the
/// embedding cost and a paraphrase probe (`EmbeddingsProbe`).
///
/// Every turn (`"<speaker>: <text>"`, the memory's content) and every question is embedded once through the
/// server, batched, and cached in `--embeddings-cache` (default `bench-out/embeddings/`, git-ignored).
struct EmbeddingsBenchmark {
    let dataPath: String
    let client: EmbeddingsClient
    let cacheDirectory: String
    /// Candidates taken from each side (lexical `recall` limit, dense top rows) before fusion.
    let depth: Int
    let costSamples: Int
    let probe: Bool
    /// `--fusions NAME,NAME,…`: evaluate only these fusions (names as printed, without the encoding; `none` for
    /// none); all of them by default.
    let fusionFilter: Set<String>?
    /// `--dump FILE`: write what the fusions read (`EmbeddingsDump`).
    let dumpPath: String?

    init(options: Options) throws {
        dataPath = options.string("data", default: "../shared/data/locomo-dev.json")
        guard let url = options.value("embeddings"), let model = options.value("embeddings-model") else {
            throw Options.Invalid(description: "--embeddings URL needs --embeddings-model NAME")
        }
        let dimensions = options.value("embeddings-dimensions") == nil ? nil : try options.int("embeddings-dimensions", default: 0)
        client = try EmbeddingsClient(
            base: url, model: model,
            apiKey: options.value("embeddings-key") ?? ProcessInfo.processInfo.environment["MEMPROXY_EMBEDDINGS_API_KEY"],
            dimensions: dimensions, batchSize: try options.int("embeddings-batch", default: 64),
            encoding: options.string("embeddings-encoding", default: "float")
        )
        cacheDirectory = options.string("embeddings-cache", default: "bench-out/embeddings")
        depth = try options.int("candidates", default: 50)
        costSamples = try options.int("cost-samples", default: 100)
        probe = options.string("probe", default: "1") != "0"
        fusionFilter = options.value("fusions").map { Set($0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) }
        dumpPath = options.value("dump")
    }

    /// The fusions evaluated for one encoding, after `--fusions`.
    func selectedFusions(_ encoding: DenseIndex.Encoding) -> [Fusion] {
        let all = fusions(encoding)
        guard let fusionFilter else { return all }
        return all.filter { fusionFilter.contains($0.name) }
    }

    struct Turn {
        let memoryID: String
        let dialogueID: String
        let content: String
    }

    struct Question {
        let session: String
        let text: String
        let category: Int
        let evidence: Set<String>
    }

    struct Scores {
        var count = 0
        var recall = [1: 0.0, 5: 0.0, 10: 0.0, 20: 0.0]
        var hit10 = 0.0

        mutating func add(ranked: [String], evidence: Set<String>) {
            count += 1
            for k in [1, 5, 10, 20] {
                recall[k, default: 0] += Double(Set(ranked.prefix(k)).intersection(evidence).count) / Double(evidence.count)
            }
            if !Set(ranked.prefix(10)).isDisjoint(with: evidence) { hit10 += 1 }
        }

        func value(_ k: Int) -> Double { (recall[k] ?? 0) / Double(max(count, 1)) }
        var hit: Double { hit10 / Double(max(count, 1)) }
    }

    struct Result {
        var overall = Scores()
        var perCategory: [Int: Scores] = [:]

        mutating func add(ranked: [String], question: Question) {
            if (1...4).contains(question.category) { overall.add(ranked: ranked, evidence: question.evidence) }
            perCategory[question.category, default: Scores()].add(ranked: ranked, evidence: question.evidence)
        }
    }

    func run() async throws {
        var logger = Logger(label: "memproxy.bench")
        logger.logLevel = .warning
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("locomo.sqlite").path
        let (sessions, questions) = try loadLoCoMo(into: SQLiteMemoryStore(configuration: .init(path: path), logger: logger))
        let turnCount = sessions.values.reduce(0) { $0 + $1.count }
        print("loaded \(sessions.count) conversations, \(turnCount) turns, \(questions.count) scored questions")

        var cache = try EmbeddingsCache(directory: cacheDirectory, model: client.model, dimensions: client.dimensions)
        let texts = sessions.keys.sorted().flatMap { sessions[$0]!.map(\.content) } + questions.map(\.text)
        let fillStart = ContinuousClock.now
        try await cache.fill(texts, client: client)
        let fillSeconds = milliseconds(ContinuousClock.now - fillStart) / 1000
        print(
            "embeddings (\(client.model) at \(client.endpoint.absoluteString)): \(cache.embeddedNow) embedded now in "
                + "\(format(fillSeconds, 1)) s (batches of \(client.batchSize)), the rest from \(cache.path)"
        )
        guard let dimensions = texts.first.flatMap({ cache[$0]?.count }) else { return }

        var indexes: [String: DenseIndex] = [:]
        var dialogueOfMemory: [String: String] = [:]
        for (session, turns) in sessions {
            var index = DenseIndex(dimensions: dimensions)
            for turn in turns {
                index.append(id: turn.memoryID, vector: cache[turn.content]!)
                dialogueOfMemory[turn.memoryID] = turn.dialogueID
            }
            indexes[session] = index
        }

        var configuration = SQLiteMemoryStore.Configuration(path: path)
        configuration.recall = RecallSettings()
        let store = try SQLiteMemoryStore(configuration: configuration, logger: logger)
        let fusedEncodings: [DenseIndex.Encoding] = [.f32, .int8]
        var names = ["lexical (default)"] + DenseIndex.Encoding.allCases.map { "dense \($0.rawValue)" }
        for encoding in fusedEncodings { names += selectedFusions(encoding).map { "\($0.name) \(encoding.rawValue)" } }
        var results: [String: Result] = [:]
        var denseTime: [DenseIndex.Encoding: Duration] = [:]
        var fusionTime = Duration.zero
        var lexicalTop: [Double] = []
        var dump = EmbeddingsDump()
        // The bench's own ranking of the fusion the store implements (int8), per question: compared with the store's.
        var referenceTop: [[String]] = []
        for question in questions {
            let ranked = try await store.recall(session: question.session, query: question.text, limit: 20)
            results[names[0], default: Result()].add(ranked: ranked.compactMap { dialogueOfMemory[$0.memory.id] }, question: question)
            let candidates = try await store.recall(session: question.session, query: question.text, limit: depth)
                .map { (id: $0.memory.id, score: $0.score) }
            lexicalTop.append(candidates.first?.score ?? 0)
            let index = indexes[question.session]!
            let query = cache[question.text]!
            for encoding in DenseIndex.Encoding.allCases {
                let start = ContinuousClock.now
                let scores = index.scores(query, encoding)
                let top = DenseIndex.top(scores, 20)
                denseTime[encoding, default: .zero] += ContinuousClock.now - start
                results["dense \(encoding.rawValue)", default: Result()].add(
                    ranked: top.compactMap { dialogueOfMemory[index.ids[$0]] }, question: question
                )
                if encoding == .int8, dumpPath != nil {
                    let rowOfDialogue = Dictionary(index.ids.enumerated().map { (dialogueOfMemory[$1] ?? "", $0) }, uniquingKeysWith: { first, _ in first })
                    dump.addQuestion(
                        session: question.session, category: question.category,
                        evidence: question.evidence.compactMap { rowOfDialogue[$0] }.sorted(),
                        lexical: candidates.compactMap { candidate in index.rows[candidate.id].map { (row: $0, score: candidate.score) } },
                        cosines: scores
                    )
                }
                guard fusedEncodings.contains(encoding) else { continue }
                for fusion in selectedFusions(encoding) {
                    let start = ContinuousClock.now
                    let fused = fusion.rank(lexical: candidates, dense: scores, index: index, depth: depth)
                    fusionTime += ContinuousClock.now - start
                    results["\(fusion.name) \(encoding.rawValue)", default: Result()].add(
                        ranked: fused.prefix(20).compactMap { dialogueOfMemory[$0] }, question: question
                    )
                    if encoding == .int8, fusion.name == Self.storeReference { referenceTop.append(Array(fused.prefix(20))) }
                }
            }
        }
        let storeRun = try await storeHybrid(path: path, questions: questions, cache: cache, logger: logger)
        names.append(Self.storeRow)
        results[Self.storeRow] = Result()
        for (question, ranked) in zip(questions, storeRun.ranked) {
            results[Self.storeRow]!.add(ranked: ranked.compactMap { dialogueOfMemory[$0] }, question: question)
        }
        printTables(names: names, results: results, questions: questions.count, depth: depth)
        storeRun.report(reference: referenceTop.count == questions.count ? referenceTop : nil)
        let perQuestion = Double(max(questions.count, 1))
        let timing = DenseIndex.Encoding.allCases.map { encoding in
            "\(encoding.rawValue) \(format(milliseconds(denseTime[encoding] ?? .zero) * 1000 / perQuestion, 0)) µs"
        }
        print(
            "\ndense ranking CPU per query (exact, scalar loops, one session of ~\(turnCount / max(sessions.count, 1)) turns): "
                + timing.joined(separator: ", ") + "; one fusion \(format(milliseconds(fusionTime) * 1000 / perQuestion / Double(max(1, selectedFusions(.f32).count + selectedFusions(.int8).count)), 0)) µs"
        )

        lexicalTop.sort()
        print(
            "lexical top score over the questions: p10 \(format(percentile(lexicalTop, 0.1), 2)), p50 "
                + "\(format(percentile(lexicalTop, 0.5), 2)), p90 \(format(percentile(lexicalTop, 0.9), 2))"
        )
        try await measureCost(questions: questions.map(\.text), turns: sessions.values.flatMap { $0.map(\.content) })
        if probe {
            try await EmbeddingsProbe(client: client, depth: depth, logger: logger, fusions: selectedFusions, storeModel: storeModel)
                .run(distractors: sessions.keys.sorted().flatMap { sessions[$0]!.map(\.content) }, cache: &cache, dump: &dump)
        }
        if let dumpPath { try dump.write(to: dumpPath) }
    }

    /// Loads the conversations the way `LoCoMoBenchmark` does (same memories, same order, same dates).
    private func loadLoCoMo(into store: SQLiteMemoryStore) throws -> ([String: [Turn]], [Question]) {
        guard let data = FileManager.default.contents(atPath: dataPath) else {
            throw LoCoMoBenchmark.DataError(description: "cannot read LoCoMo data at '\(dataPath)': run from the repository root or pass --data PATH")
        }
        guard let samples = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw LoCoMoBenchmark.DataError(description: "\(dataPath): expected a JSON list of samples")
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "h:mm a 'on' d MMMM, yyyy"
        var sessions: [String: [Turn]] = [:]
        var questions: [Question] = []
        for sample in samples {
            guard let sampleID = sample["sample_id"] as? String, let conversation = sample["conversation"] as? [String: Any] else {
                throw LoCoMoBenchmark.DataError(description: "a sample lacks sample_id or conversation")
            }
            let session = "locomo-\(sampleID)"
            var memories: [Memory] = []
            var turns: [Turn] = []
            var number = 1
            while let dialogue = conversation["session_\(number)"] as? [[String: Any]] {
                let dateText = conversation["session_\(number)_date_time"] as? String ?? ""
                guard let date = formatter.date(from: dateText) else {
                    throw LoCoMoBenchmark.DataError(description: "\(sampleID) session \(number): cannot parse date '\(dateText)'")
                }
                for turn in dialogue {
                    guard let speaker = turn["speaker"] as? String, let text = turn["text"] as? String,
                        let id = turn["dia_id"] as? String
                    else { continue }
                    let memory = Memory(sessionID: session, type: .episodic, content: "\(speaker): \(text)", createdAt: date, source: "import")
                    memories.append(memory)
                    turns.append(Turn(memoryID: memory.id, dialogueID: id, content: memory.content))
                }
                number += 1
            }
            try store.insert(memories)
            sessions[session] = turns
            let dialogues = Set(turns.map(\.dialogueID))
            for qa in sample["qa"] as? [[String: Any]] ?? [] {
                guard let question = qa["question"] as? String, let category = qa["category"] as? Int else { continue }
                let evidence = (qa["evidence"] as? [String] ?? [])
                    .flatMap { $0.split(whereSeparator: { $0 == ";" || $0 == " " }) }
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                    .filter { dialogues.contains($0) }
                guard !evidence.isEmpty else { continue }
                questions.append(Question(session: session, text: question, category: category, evidence: Set(evidence)))
            }
        }
        return (sessions, questions)
    }

    private func printTables(names: [String], results: [String: Result], questions: Int, depth: Int) {
        let labels = [1: "1 multi-hop", 2: "2 temporal", 3: "3 open-domain", 4: "4 single-hop", 5: "5 adversarial"]
        let lexical = results[names[0]] ?? Result()
        let categories = lexical.perCategory.keys.sorted()
        print("")
        print(
            "LoCoMo retrieval, lexical / dense / hybrid (\(dataPath), \(client.model)), overall = categories 1–4 "
                + "(\(lexical.overall.count) questions); fusions over the top \(depth) of each side"
        )
        print("| method | R@1 | R@5 | R@10 | R@20 | Hit@10 | ΔR@10 vs lexical |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in names {
            let result = results[name] ?? Result()
            let delta = result.overall.value(10) - lexical.overall.value(10)
            let cells = [1, 5, 10, 20].map { format(result.overall.value($0)) } + [format(result.overall.hit), (delta >= 0 ? "+" : "") + format(delta)]
            print("| \(name) | " + cells.joined(separator: " | ") + " |")
        }
        print("")
        print("per category, R@5 / R@10 / R@20 (a * marks an R@10 below lexical's)")
        let heads = categories.map { "\(labels[$0] ?? "category \($0)") (\(lexical.perCategory[$0]?.count ?? 0))" }
        print("| method | " + heads.joined(separator: " | ") + " |")
        print("|---|" + String(repeating: "---:|", count: categories.count))
        for name in names {
            let result = results[name] ?? Result()
            let cells = categories.map { category in
                let scores = result.perCategory[category] ?? Scores()
                let below = scores.value(10) < (lexical.perCategory[category]?.value(10) ?? 0) - 1e-9
                return [5, 10, 20].map { format(scores.value($0)) }.joined(separator: " / ") + (below ? " *" : "")
            }
            print("| \(name) | " + cells.joined(separator: " | ") + " |")
        }
        if let best = names.dropFirst(4).filter({ $0 != Self.storeRow }).max(by: { (results[$0]?.overall.value(10) ?? 0) < (results[$1]?.overall.value(10) ?? 0) }) {
            let result = results[best] ?? Result()
            let below = (1...4).filter { (result.perCategory[$0]?.value(10) ?? 0) < (lexical.perCategory[$0]?.value(10) ?? 0) - 1e-9 }
            print(
                "\nbest fusion on R@10: \(best) (\(format(result.overall.value(10))) vs lexical \(format(lexical.overall.value(10)))); "
                    + "categories 1–4 below lexical at R@10: " + (below.isEmpty ? "none" : below.map(String.init).joined(separator: ", "))
            )
        }
    }

    /// Wall time of single-text requests (a query on the request path; a memory embedded alone) and of full
    /// batches, over loopback HTTP, bypassing the cache.
    private func measureCost(questions: [String], turns: [String]) async throws {
        guard costSamples > 0 else { return }
        func timed(_ texts: [String]) async throws -> Double {
            let start = ContinuousClock.now
            _ = try await client.embed(texts)
            return milliseconds(ContinuousClock.now - start)
        }
        _ = try await timed([questions[0]])  // connection warm-up
        var queryTimes: [Double] = []
        for text in questions.prefix(costSamples) { queryTimes.append(try await timed([text])) }
        var single: [Double] = []
        for text in turns.prefix(costSamples) { single.append(try await timed([text])) }
        let batches = Array(turns.dropFirst(costSamples).prefix(client.batchSize * 4))
        let batched = try await timed(batches) / Double(max(batches.count, 1))
        queryTimes.sort()
        single.sort()
        print("")
        print("embedding cost (wall time over loopback HTTP, this machine; \(costSamples) samples)")
        print("| what | p50 ms | p99 ms | mean ms |")
        print("|---|---:|---:|---:|")
        let mean = { (values: [Double]) in values.reduce(0, +) / Double(max(values.count, 1)) }
        print("| one question per request | \(format(percentile(queryTimes, 0.5), 2)) | \(format(percentile(queryTimes, 0.99), 2)) | \(format(mean(queryTimes), 2)) |")
        print("| one turn per request | \(format(percentile(single, 0.5), 2)) | \(format(percentile(single, 0.99), 2)) | \(format(mean(single), 2)) |")
        print("| a turn in batches of \(client.batchSize) (\(batches.count) turns) | | | \(format(batched, 2)) |")
    }
}
