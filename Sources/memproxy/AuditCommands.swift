import ArgumentParser
import Foundation
import MemProxy

/// `memproxy sessions`: the sessions in the database with their memory counts and last activity.
struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "List the sessions that have memories, with counts and last activity."
    )
    @OptionGroup var store: StoreOptions
    @Option(help: "Sessions per page (1-500).") var limit: Int = 50
    @Option(help: "Continue after this cursor (printed under the previous page).") var cursor: String?

    func run() async throws {
        let api = store.open()
        let page = await cliRun { try await api.sessions(limit: limit, cursor: cursor) }
        if store.json { return emit(page.json) }
        var table = TextTable(headers: ["SESSION", "MEMORIES", "LAST ACTIVITY"])
        for session in page.data {
            table.add([session.sessionID, String(session.memoryCount), timeText(session.lastActivity)])
        }
        emit(page.data.isEmpty ? "No sessions." : table.text)
        if let next = page.nextCursor { emit("More: --cursor \(next)") }
    }
}

/// `memproxy injections`: what the model was shown, request by request (the injection log), oldest first.
struct InjectionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "injections",
        abstract: "Show what memproxy injected into a session's requests (oldest first, like a log).",
        discussion: "With --follow, keeps printing new injections as requests arrive, until interrupted."
    )
    @OptionGroup var session: SessionOption
    @OptionGroup var store: StoreOptions
    @Option(name: .customLong("request-id"), help: "Only the injection of this request (X-Memproxy-Request-Id).")
    var requestID: String?
    @Option(help: "How many of the newest injections to show (1-500).") var limit: Int = 20
    @Flag(help: "Keep printing new injections as they are recorded.") var follow = false
    @Option(help: .hidden) var maxRecords: Int?

    /// How often `--follow` looks for new records.
    static let pollInterval = Duration.milliseconds(250)

    func run() async throws {
        let api = store.open()
        let newest = await cliRun {
            try await api.injections(session: session.session, requestID: requestID, limit: limit)
        }
        var printed = 0
        var last: Int64 = newest.first?.sequence ?? 0
        for record in newest.reversed() { show(record, &printed) }
        guard follow else {
            if newest.isEmpty, !store.json { emit("No injections recorded for session \(session.session).") }
            return
        }
        note("Following new injections of session \(session.session) (Ctrl-C to stop).")
        while maxRecords.map({ printed < $0 }) ?? true {
            try await Task.sleep(for: Self.pollInterval)
            let after = last
            let fresh = await cliRun {
                try await api.injections(session: session.session, requestID: requestID, limit: 500, after: after)
            }
            for record in fresh { show(record, &printed) }
            last = fresh.last?.sequence ?? last
        }
    }

    private func show(_ record: InjectionObject, _ printed: inout Int) {
        guard maxRecords.map({ printed < $0 }) ?? true else { return }
        printed += 1
        if store.json { return emit(record.json) }
        let scores = zip(record.memoryIDs, record.scores).map { "\($0) (\(String(format: "%.3f", $1)))" }
        emit(
            """
            \(timeText(record.createdAt))  \(record.requestID)  api=\(record.api)  model=\(record.model ?? "-")  \
            memories=\(record.memoryIDs.count)  tokens=\(record.tokens)  recall=\(String(format: "%.2f", record.recallMs))ms
              \(scores.joined(separator: ", "))
            \(record.block.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n"))

            """
        )
    }
}
