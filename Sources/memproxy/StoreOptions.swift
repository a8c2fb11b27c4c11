import ArgumentParser
import Foundation
import Logging
import MemProxy

#if canImport(Glibc)
    import Glibc
#endif

/// Options of every command that works on the memory database directly (also while the server runs).
struct StoreOptions: ParsableArguments {
    @Option(help: "Path of the TOML config file. Default: ./proxy.conf when it exists.")
    var config: String?

    @Option(help: "The memory database file. Default: memory.database of the configuration.")
    var database: String?

    @Flag(help: "Print JSON (one object per line) instead of human-readable text, for scripts.")
    var json = false

    /// Opens the database; exits with one line on stderr when that fails.
    ///
    /// - Parameter create: Whether a missing database file may be created (commands that add memories).
    func open(create: Bool = false) -> MemoryAPI {
        var overrides: [String: String] = [:]
        if let database { overrides["memory.database"] = database }
        let configuration = Serve.loadConfiguration(file: self.config, overrides: overrides)
        var logger = Logger(label: "memproxy")
        logger.logLevel = .error
        return cliRun { try MemoryAPI.open(configuration: configuration, logger: logger, create: create) }
    }
}

/// The session a command works on.
struct SessionOption: ParsableArguments {
    @Option(help: "The session id (as sent in X-Session-Id).")
    var session: String
}

/// Runs `body`, turning a memory API error into `memproxy: error: …` on stderr and exit status 1.
func cliRun<T>(_ body: () throws -> T) -> T {
    do {
        return try body()
    } catch {
        Serve.fail(cliMessage(error))
    }
}

/// The async form of ``cliRun(_:)``.
func cliRun<T>(_ body: () async throws -> T) async -> T {
    do {
        return try await body()
    } catch {
        Serve.fail(cliMessage(error))
    }
}

private func cliMessage(_ error: any Error) -> String {
    (error as? OpenAIError)?.message ?? "\(error)"
}

/// Writes a line to stdout at once (so followers and pipes see it without waiting for exit).
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

/// Writes a line to stderr.
func note(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Asks on the terminal; only `y` or `yes` confirms. Without `--yes` and without an answer, nothing happens.
func confirm(_ question: String, yes: Bool) {
    guard !yes else { return }
    FileHandle.standardError.write(Data("\(question) [y/N] ".utf8))
    let answer = readLine()?.trimmingCharacters(in: .whitespaces).lowercased()
    guard answer == "y" || answer == "yes" else {
        Serve.fail("aborted: nothing was changed (pass --yes to skip this question)")
    }
}

/// A plain-text table: a header row, then one row per item; cells are single-line and cut to `maxWidth`.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []
    var maxWidth = 60

    mutating func add(_ cells: [String]) {
        rows.append(cells.map { Self.cell($0, maxWidth: maxWidth) })
    }

    var text: String {
        let widths = headers.indices.map { column in
            ([headers] + rows).map { $0[column].count }.max() ?? 0
        }
        return ([headers] + rows).map { row in
            zip(row, widths).map { cell, width in cell.padding(toLength: width, withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }

    static func cell(_ text: String, maxWidth: Int) -> String {
        let flat = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        return flat.count <= maxWidth ? flat : String(flat.prefix(maxWidth - 1)) + "…"
    }
}

/// `2026-11-25T10:04:05Z` (UTC, whole seconds) for tables.
func timeText(_ date: Date?) -> String {
    date.map { $0.formatted(.iso8601) } ?? "-"
}
