import Foundation
import Logging
import MemProxyStore

/// LoCoMo retrieval quality through the same `recall(session:query:limit:)` the proxy uses.
/// Metric rules: `shared/data/README.md`.
struct LoCoMoBenchmark {
    let dataPath: String

    init(options: Options) throws {
        dataPath = options.string("data", default: "../shared/data/locomo-dev.json")
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

        func row(_ name: String) -> String {
            let n = Double(max(count, 1))
            let cells = [1, 5, 10, 20].map { format((recall[$0] ?? 0) / n) }
            return "| \(name) | \(count) | " + cells.joined(separator: " | ") + " | \(format(hit10 / n)) |"
        }
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
        let store = try SQLiteMemoryStore(
            configuration: .init(path: directory.appendingPathComponent("locomo.sqlite").path),
            logger: logger
        )

        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "h:mm a 'on' d MMMM, yyyy"

        var dialogueOfMemory: [String: String] = [:]
        var questions: [Question] = []
        var turns = 0
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
                    var content = "\(speaker): \(text)"
                    if let caption = turn["blip_caption"] as? String, !caption.isEmpty {
                        content += " [shares a photo: \(caption)]"
                    }
                    let memory = Memory(
                        sessionID: session, type: .episodic, content: content, createdAt: date, source: "import"
                    )
                    dialogueOfMemory[memory.id] = id
                    dialogues.insert(id)
                    memories.append(memory)
                }
                number += 1
            }
            try store.insert(memories)
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
        print("loaded \(samples.count) conversations, \(turns) turns, \(questions.count) scored questions")

        var overall = Scores()
        var perCategory: [Int: Scores] = [:]
        var elapsed = Duration.zero
        for question in questions {
            let start = ContinuousClock.now
            let recalled = try await store.recall(session: question.session, query: question.text, limit: 20)
            elapsed += ContinuousClock.now - start
            let ranked = recalled.compactMap { dialogueOfMemory[$0.memory.id] }
            if (1...4).contains(question.category) { overall.add(ranked: ranked, evidence: question.evidence) }
            perCategory[question.category, default: Scores()].add(ranked: ranked, evidence: question.evidence)
        }
        print("")
        print("LoCoMo retrieval (\(dataPath)), \(format(milliseconds(elapsed) / Double(max(questions.count, 1)))) ms/query")
        print("| questions | n | R@1 | R@5 | R@10 | R@20 | Hit@10 |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        print(overall.row("overall (1–4)"))
        let names = [1: "1 multi-hop", 2: "2 temporal", 3: "3 open-domain", 4: "4 single-hop", 5: "5 adversarial"]
        for category in perCategory.keys.sorted() {
            print(perCategory[category, default: Scores()].row(names[category] ?? "category \(category)"))
        }
    }
}
