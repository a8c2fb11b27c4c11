import ArgumentParser
import Foundation
import Logging
import MemProxy
import NIOCore
import ServiceLifecycle
import UnixSignals
#if canImport(Glibc)
import Glibc
#endif

@main
struct MemproxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memproxy",
        abstract: "A memory proxy for OpenAI-compatible APIs.",
        discussion: """
            Point your OpenAI client's base URL at memproxy (e.g. http://127.0.0.1:8080/v1). \
            Configuration comes from proxy.conf, then MEMPROXY_<SECTION>_<KEY> environment variables, then flags.
            """,
        subcommands: [
            Serve.self, MemoriesCommand.self, SessionsCommand.self, InjectionsCommand.self, ExplainCommand.self,
            EmbeddingsCommand.self, DemoCommand.self,
            FakeUpstreamCommand.self,
        ],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the proxy (the default command)."
    )

    @Option(help: "Path of the TOML config file. Default: ./proxy.conf when it exists.")
    var config: String?

    @Option(help: "Address to listen on, HOST:PORT (overrides server.listen / MEMPROXY_SERVER_LISTEN).")
    var listen: String?

    @Option(help: "Upstream base URL, e.g. https://api.openai.com (overrides upstream.url / MEMPROXY_UPSTREAM_URL).")
    var upstream: String?

    func run() async throws {
        var overrides: [String: String] = [:]
        if let listen { overrides["server.listen"] = listen }
        if let upstream { overrides["upstream.url"] = upstream }
        let configuration = Self.loadConfiguration(file: self.config, overrides: overrides)
        bootstrapLogging(configuration.log)
        let logger = Logger(label: "memproxy")
        let app: any Service
        do {
            app = try buildApplication(configuration: configuration, logger: logger)
        } catch {
            Self.fail("\(error)")
        }
        var groupConfiguration = ServiceGroupConfiguration(
            services: [app],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        // In-flight requests get this long to finish after SIGTERM/SIGINT; then they are cancelled.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(30)
        groupConfiguration.maximumCancellationDuration = .seconds(5)
        do {
            try await ServiceGroup(configuration: groupConfiguration).run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            Self.fail(
                "cannot listen on \(configuration.server.listen): the address is already in use. "
                    + "Stop the other process or choose another address with --listen or server.listen."
            )
        } catch {
            Self.fail("server stopped: \(error)")
        }
    }

    /// The configuration from `file` (default: ./proxy.conf when it exists), the environment and `overrides`;
    /// exits with status 1 and one line on stderr when it is invalid.
    static func loadConfiguration(file: String?, overrides: [String: String] = [:]) -> ProxyConfiguration {
        let file = file ?? (FileManager.default.fileExists(atPath: "proxy.conf") ? "proxy.conf" : nil)
        do {
            return try ProxyConfiguration.load(
                file: file,
                environment: ProcessInfo.processInfo.environment,
                overrides: overrides
            )
        } catch {
            Self.fail("invalid configuration: \(error.description)")
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("memproxy: error: \(message)\n".utf8))
        Glibc.exit(1)
    }
}
