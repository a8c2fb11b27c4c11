import Foundation

/// `--dump FILE`: what every fusion reads, written out as JSON so that fusions can be explored offline (numpy and
/// the like, without a server or a store): per LoCoMo question its conversation, category, evidence rows,
/// lexical candidates (row, score) and the int8 cosine of every row; per probe fact the same with the fact's row.
/// Rows are positions in the conversation's (or probe session's) dense index.
struct EmbeddingsDump {
    private var questions: [[String: Any]] = []
    private var probe: [[String: Any]] = []

    mutating func addQuestion(session: String, category: Int, evidence: [Int], lexical: [(row: Int, score: Double)], cosines: [Float]) {
        questions.append([
            "session": session, "category": category, "evidence": evidence,
            "lexical": lexical.map { [$0.row, $0.score] as [Any] }, "cosines": cosines.map { Double($0) },
        ])
    }

    mutating func addProbe(fact: Int, lexical: [(row: Int, score: Double)], cosines: [Float]) {
        probe.append(["fact": fact, "lexical": lexical.map { [$0.row, $0.score] as [Any] }, "cosines": cosines.map { Double($0) }])
    }

    func write(to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: ["questions": questions, "probe": probe])
        try data.write(to: URL(fileURLWithPath: path))
        print("dump: \(questions.count) questions, \(probe.count) probe facts written to \(path)")
    }
}
