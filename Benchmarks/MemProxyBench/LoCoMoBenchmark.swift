import Foundation
import Logging
import MemProxyStore

/// LoCoMo retrieval quality through the same `recall(session:query:limit:)` the proxy uses, for the baseline,
/// each recall knob alone and the default configuration. Metric rules: `shared/data/README.md`.
///
/// The conversations are loaded with `SQLiteMemoryStore.insert` (the store's own insert path, the one the
/// memory API's import uses): one memory per turn, `"<speaker>: <text>"`, the session's date as `created_at`,
/// in conversation order. The index (neighbours, dates) is built by the store's triggers, so every
/// configuration reads the same database.
struct LoCoMoBenchmark {
    let dataPath: String
    let configurations: [(name: String, settings: RecallSettings)]

    init(options: Options) throws {
        dataPath = options.string("data", default: "../shared/data/locomo-dev.json")
        var configurations = Self.standardConfigurations
        if let names = options.value("configs") {
            let wanted = names.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            configurations = try wanted.map { name in
                guard let match = Self.standardConfigurations.first(where: { $0.name == name }) else {
                    throw Options.Invalid(
                        description: "unknown configuration '\(name)': expected one of "
                            + Self.standardConfigurations.map(\.name).joined(separator: ", ")
                    )
                }
                return match
            }
        }
        // `--try "near=0.4,far=0.2;near=0.6"`: extra configurations, each the default with some knobs changed.
        if let variants = options.value("try") {
            for variant in variants.split(separator: ";") {
                configurations.append((String(variant), try Self.settings(String(variant), base: RecallSettings())))
            }
        }
        self.configurations = configurations
    }

    /// The baseline, each knob alone on top of it, and the default.
    static var standardConfigurations: [(name: String, settings: RecallSettings)] {
        let baseline = RecallSettings.baseline
        let defaults = RecallSettings()
        var near = baseline
        near.nearWeight = defaults.nearWeight
        var far = baseline
        far.farWeight = defaults.farWeight
        var neighbours = baseline
        neighbours.nearWeight = defaults.nearWeight
        neighbours.farWeight = defaults.farWeight
        var date = baseline
        date.dateWeight = defaults.dateWeight
        var temporal = baseline
        // A knob that is off by default is shown at the value measured for it.
        temporal.temporalBoost = defaults.temporalBoost != 1 ? defaults.temporalBoost : 1.5
        var feedback = baseline
        feedback.feedbackDocuments = defaults.feedbackDocuments > 0 ? defaults.feedbackDocuments : 3
        return [
            ("baseline", baseline),
            ("near", near),
            ("far", far),
            ("near+far", neighbours),
            ("date", date),
            ("temporal", temporal),
            ("feedback", feedback),
            ("default", defaults),
        ]
    }

    /// Applies `name=value` pairs (comma-separated) to `base`.
    static func settings(_ text: String, base: RecallSettings) throws -> RecallSettings {
        var settings = base
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let value = Double(parts[1]) else {
                throw Options.Invalid(description: "--try expects name=value pairs, got '\(pair)'")
            }
            switch parts[0] {
            case "near": settings.nearWeight = value
            case "far": settings.farWeight = value
            case "date": settings.dateWeight = value
            case "temporal": settings.temporalBoost = value
            case "feedback": settings.feedbackDocuments = Int(value)
            case "feedback_terms": settings.feedbackTerms = Int(value)
            case "feedback_weight": settings.feedbackWeight = value
            case "budget": settings.candidateBudget = Int(value)
            case "depth": settings.rerankDepth = Int(value)
            case "baseline": if value != 0 { settings = .baseline }
            default:
                throw Options.Invalid(
                    description: "unknown knob '\(parts[0])': near, far, date, temporal, feedback, feedback_terms, "
                        + "feedback_weight, budget, depth, baseline"
                )
            }
        }
        return settings
    }

    struct DataError: Error, CustomStringConvertible {
        let description: String
    }

    private struct Question {
        let session: String
        let text: String
        let category: Int
        let evidence: Set<String>
    }

    private struct Scores {
        var count = 0
        var recall = [1: 0.0, 5: 0.0, 10: 0.0, 20: 0.0]
        var hit10 = 0.0

        mutating func add(ranked: [String], evidence: Set<String>) {
            count += 1
            for k in [1, 5, 10, 20] {
                let found = Set(ranked.prefix(k)).intersection(evidence).count
                recall[k, default: 0] += Double(found) / Double(evidence.count)
            }
            if !Set(ranked.prefix(10)).isDisjoint(with: evidence) { hit10 += 1 }
        }

        func value(_ k: Int) -> Double { (recall[k] ?? 0) / Double(max(count, 1)) }
        var hit: Double { hit10 / Double(max(count, 1)) }
    }

    private struct Result {
        var overall = Scores()
        var perCategory: [Int: Scores] = [:]
        var milliseconds = 0.0
    }

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: dataPath) else {
            throw DataError(description: "cannot read LoCoMo data at '\(dataPath)': run from the repository root or pass --data PATH")
        }
        guard let samples = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw DataError(description: "\(dataPath): expected a JSON list of samples")
        }
        var logger = Logger(label: "memproxy.bench")
        logger.logLevel = .warning
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("locomo.sqlite").path
        let loader = try SQLiteMemoryStore(configuration: .init(path: path), logger: logger)

        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "h:mm a 'on' d MMMM, yyyy"

        var dialogueOfMemory: [String: String] = [:]
        var questions: [Question] = []
        var turns = 0
        let loadStart = ContinuousClock.now
        for sample in samples {
            guard let sampleID = sample["sample_id"] as? String,
                let conversation = sample["conversation"] as? [String: Any]
            else { throw DataError(description: "a sample lacks sample_id or conversation") }
            let session = "locomo-\(sampleID)"
            var memories: [Memory] = []
            var dialogues: Set<String> = []
            var number = 1
            while let dialogue = conversation["session_\(number)"] as? [[String: Any]] {
                let dateText = conversation["session_\(number)_date_time"] as? String ?? ""
                guard let date = formatter.date(from: dateText) else {
                    throw DataError(description: "\(sampleID) session \(number): cannot parse date '\(dateText)'")
                }
                for turn in dialogue {
                    guard let speaker = turn["speaker"] as? String, let text = turn["text"] as? String,
                        let id = turn["dia_id"] as? String
                    else { continue }
                    let memory = Memory(
                        sessionID: session, type: .episodic, content: "\(speaker): \(text)", createdAt: date,
                        source: "import"
                    )
                    dialogueOfMemory[memory.id] = id
                    dialogues.insert(id)
                    memories.append(memory)
                }
                number += 1
            }
            try loader.insert(memories)
            turns += memories.count
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
        let loadSeconds = milliseconds(ContinuousClock.now - loadStart) / 1000
        print(
            "loaded \(samples.count) conversations, \(turns) turns in \(format(loadSeconds, 2)) s, "
                + "\(questions.count) scored questions"
        )

        var results: [(name: String, result: Result)] = []
        for (name, settings) in configurations {
            var configuration = SQLiteMemoryStore.Configuration(path: path)
            configuration.recall = settings
            let store = try SQLiteMemoryStore(configuration: configuration, logger: logger)
            var result = Result()
            var elapsed = Duration.zero
            for question in questions {
                let start = ContinuousClock.now
                let recalled = try await store.recall(session: question.session, query: question.text, limit: 20)
                elapsed += ContinuousClock.now - start
                let ranked = recalled.compactMap { dialogueOfMemory[$0.memory.id] }
                if (1...4).contains(question.category) { result.overall.add(ranked: ranked, evidence: question.evidence) }
                result.perCategory[question.category, default: Scores()].add(ranked: ranked, evidence: question.evidence)
            }
            result.milliseconds = milliseconds(elapsed) / Double(max(questions.count, 1))
            results.append((name, result))
        }

        let names = [1: "1 multi-hop", 2: "2 temporal", 3: "3 open-domain", 4: "4 single-hop", 5: "5 adversarial"]
        let categories = Set(results.flatMap { $0.result.perCategory.keys }).sorted()
        print("")
        print("LoCoMo retrieval (\(dataPath)), overall = categories 1–4 (\(results.first?.result.overall.count ?? 0) questions)")
        print("| configuration | R@1 | R@5 | R@10 | R@20 | Hit@10 | ms/query |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for (name, result) in results {
            let cells = [1, 5, 10, 20].map { format(result.overall.value($0)) } + [format(result.overall.hit), format(result.milliseconds, 2)]
            print("| \(name) | " + cells.joined(separator: " | ") + " |")
        }
        print("")
        print("per category, R@5 / R@10 / R@20")
        let counts = categories.map { category in
            "\(names[category] ?? "category \(category)") (\(results.first?.result.perCategory[category]?.count ?? 0))"
        }
        print("| configuration | " + counts.joined(separator: " | ") + " |")
        print("|---|" + String(repeating: "---:|", count: categories.count))
        for (name, result) in results {
            let cells = categories.map { category in
                let scores = result.perCategory[category] ?? Scores()
                return [5, 10, 20].map { format(scores.value($0)) }.joined(separator: " / ")
            }
            print("| \(name) | " + cells.joined(separator: " | ") + " |")
        }
    }
}
