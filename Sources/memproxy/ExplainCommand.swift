import ArgumentParser
import Foundation
import MemProxy
import MemProxyStore

/// `memproxy explain REQUEST_ID`: why a request got the memories it got.
struct ExplainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show why a request got the memories it got: its injection, and recall replayed now with scores.",
        discussion: """
            REQUEST_ID is a response's X-Memproxy-Request-Id. Prints the block as it was injected, with the \
            recorded scores, then recall replayed for the request's text against the session as it is now \
            (memories added, edited or deleted since change it), each memory's score broken into its parts.
            """
    )
    @Argument(help: "The request id (X-Memproxy-Request-Id).") var requestID: String
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let api = store.open()
        let result = await cliRun { try await api.explain(requestID: requestID) }
        if store.json { return emit(result.json) }
        let injection = result.injection
        var recorded = TextTable(headers: ["ID", "SCORE (RECORDED)"])
        for (id, score) in zip(injection.memoryIDs, injection.scores) {
            recorded.add([id, String(format: "%.3f", score)])
        }
        var text = """
            request \(injection.requestID)  session \(injection.sessionID)  api=\(injection.api)  \
            model=\(injection.model ?? "-")  \(timeText(injection.createdAt))
            query: \(injection.query ?? "(not recorded)")

            As injected (\(injection.memoryIDs.count) memories, \(injection.tokens) tokens):
            \(recorded.text)

            \(injection.block)
            """
        guard let replay = result.replayedNow else {
            emit(text + "\n\nNo query was recorded for this request, so recall cannot be replayed.")
            return
        }
        // Recall by meaning adds the cosine (DENSE) and the words' own score (LEXICAL) fused into SCORE.
        let hybrid = replay.memories.contains { $0.explanation?.dense != nil }
        let headers =
            ["ID", "TYPE", "SCORE"] + (hybrid ? ["DENSE", "LEXICAL"] : [])
            + ["OWN TEXT", "NEAR", "FAR", "DATE", "×TYPE", "×TIME", "MEMORY"]
        var table = TextTable(headers: headers)
        let format = { (value: Double?) in value.map { String(format: "%.3f", $0) } ?? "-" }
        for memory in replay.memories {
            guard let parts = memory.explanation else {
                let blanks = Array(repeating: "", count: headers.count - 4)
                table.add([memory.id, memory.type, "first"] + blanks + [memory.content])
                continue
            }
            table.add(
                [memory.id, memory.type, format(parts.score)]
                    + (hybrid ? [format(parts.dense), format(parts.lexical)] : [])
                    + [parts.content, parts.near, parts.far, parts.date, parts.typeWeight, parts.temporal].map(format)
                    + [memory.content])
        }
        let mode = replay.recall.map { " (recall: \($0))" } ?? ""
        text += "\n\nReplayed now\(mode), against the session as it is now (not as it was):\n"
        text += replay.memories.isEmpty ? "nothing would be injected" : table.text
        emit(text)
    }
}
