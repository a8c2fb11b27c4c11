import ArgumentParser
import Foundation
import FakeUpstream
import Logging
import ServiceLifecycle
import UnixSignals

/// Runs the built-in fake upstream on its own (benchmarks and manual experiments; no key, no network).
struct FakeUpstreamCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fake-upstream",
        abstract: "Run the built-in OpenAI-like echo upstream (for benchmarks and experiments).",
        shouldDisplay: false
    )

    @Option(help: "Address to listen on, HOST:PORT.")
    var listen: String = "127.0.0.1:9000"

    func run() async throws {
        guard let colon = self.listen.lastIndex(of: ":"), let port = Int(self.listen[self.listen.index(after: colon)...])
        else {
            throw ValidationError("--listen must be HOST:PORT")
        }
        let host = String(self.listen[..<colon])
        var logger = Logger(label: "fake-upstream")
        logger.logLevel = .warning
        let app = FakeUpstream().makeApplication(host: host, port: port, logger: logger) { port in
            // Written unbuffered so that scripts reading a pipe see it at once.
            FileHandle.standardOutput.write(Data("fake upstream listening on http://\(host):\(port)\n".utf8))
        }
        try await ServiceGroup(
            services: [app],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ).run()
    }
}
