import ArgumentParser
import Foundation
import Logging
import MemProxy
import MemProxyStore

/// `memproxy embeddings …`: the vectors of recall by meaning (`[embeddings]`), in the database file.
struct EmbeddingsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embeddings",
        abstract: "Show where memory vectors stand, and embed the memories waiting for one.",
        discussion: """
            The server embeds new and edited memories in the background when [embeddings] is configured; these \
            commands work on the database file directly, also while it runs.
            """,
        subcommands: [Status.self, Backfill.self]
    )

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Counts: memories, embedded, queued (and the oldest's age), stale vectors of another model.")
        @OptionGroup var store: StoreOptions

        func run() async throws {
            let tool = store.openEmbeddings()
            let status = await cliRun { try await tool.status() }
            let lag = status.oldestQueuedAt.map { max(0, Date().timeIntervalSince($0)) }
            if store.json {
                var fields: [String] = [
                    "\"configured_model\":" + jsonString(tool.configuredModel),
                    "\"database_model\":" + jsonString(status.model),
                    "\"memories\":\(status.memories)", "\"embedded\":\(status.embedded)", "\"queued\":\(status.queued)",
                    "\"stale\":\(status.stale)",
                ]
                fields.append("\"lag_seconds\":" + (lag.map { String(format: "%.3f", $0) } ?? "null"))
                return emit("{" + fields.joined(separator: ",") + "}")
            }
            emit("configured model: \(tool.configuredModel ?? "none (embeddings.url is empty: the server does not embed)")")
            emit("database model:   \(status.model ?? "none (embeddings were never configured for this database)")")
            emit("memories:         \(status.memories)")
            emit("embedded:         \(status.embedded)")
            emit("queued:           \(status.queued)" + (lag.map { String(format: " (oldest queued %.1f s ago)", $0) } ?? ""))
            emit("stale vectors:    \(status.stale)")
            if let configured = tool.configuredModel, configured != status.model {
                emit("The configured model is not the database's: run `memproxy embeddings backfill` (or start the server).")
            }
        }

        private func jsonString(_ text: String?) -> String {
            guard let text else { return "null" }
            let data = (try? JSONSerialization.data(withJSONObject: [text])) ?? Data("[\"\"]".utf8)
            return String(decoding: data, as: UTF8.self).dropFirst().dropLast().description
        }
    }

    struct Backfill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Embed every memory waiting for a vector of the configured model (resumable).",
            discussion: """
                Uses [embeddings] of the configuration. A new model or dimensions queues every memory first. \
                Interrupt it at any time: what is left stays queued for the next run (or the server).
                """)
        @OptionGroup var store: StoreOptions
        @Option(help: "Only this session's memories.") var session: String?

        func run() async throws {
            let tool = store.openEmbeddings()
            let start = Date()
            let interactive = isatty(STDERR_FILENO) != 0
            let done = await cliRun {
                try await tool.backfill(session: session) { done, total in
                    let elapsed = max(Date().timeIntervalSince(start), 0.001)
                    let rate = Double(done) / elapsed
                    let shown = max(total, done)
                    let filled = shown > 0 ? done * 30 / shown : 30
                    let eta = rate > 0 && shown > done ? String(format: ", ETA %.0f s", Double(shown - done) / rate) : ""
                    let line = "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: 30 - filled)
                        + "] \(done)/\(shown) memories, " + String(format: "%.0f/s", rate) + eta
                    if interactive {
                        FileHandle.standardError.write(Data(("\r" + line).utf8))
                    } else if done == shown || done % 1024 < 64 {
                        note(line)
                    }
                }
            }
            if interactive { note("") }
            let status = await cliRun { try await tool.status() }
            if store.json {
                return emit("{\"embedded_now\":\(done),\"embedded\":\(status.embedded),\"queued\":\(status.queued)}")
            }
            emit("embedded \(done) memories; \(status.embedded) of \(status.memories) have a vector, \(status.queued) queued")
        }
    }
}

extension StoreOptions {
    /// Opens the database for the embeddings commands; exits with one line on stderr when that fails.
    func openEmbeddings() -> EmbeddingsTool {
        var overrides: [String: String] = [:]
        if let database { overrides["memory.database"] = database }
        let configuration = Serve.loadConfiguration(file: self.config, overrides: overrides)
        var logger = Logger(label: "memproxy")
        logger.logLevel = .error
        return cliRun { try EmbeddingsTool.open(configuration: configuration, logger: logger) }
    }
}
