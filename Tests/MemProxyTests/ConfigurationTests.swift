import Foundation
import Logging
import MemProxy
import MemProxyStore
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    func writeTemp(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("memproxy-\(UUID().uuidString).conf").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("defaults when nothing is given")
    func defaults() throws {
        let config = try ProxyConfiguration.load(file: nil, environment: [:])
        #expect(config.server.listen == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(config.server.maxBodyBytes == 8_388_608)
        #expect(config.upstream.url == "https://api.openai.com")
        #expect(config.upstream.connectTimeoutSeconds == 10)
        #expect(config.upstream.timeoutSeconds == 600)
        #expect(config.upstream.apiKey == nil)
        #expect(config.log.level == .info)
        #expect(config.log.format == .json)
    }

    @Test("the checked-in proxy.conf parses and matches the defaults")
    func checkedInConfig() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let config = try ProxyConfiguration.load(file: root.appendingPathComponent("proxy.conf").path, environment: [:])
        #expect(config.server.listen == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(config.upstream.url == "https://api.openai.com")
        #expect(config.memory.recallCacheMemories == 500_000)
    }

    @Test("memory.recall_cache_memories: file and environment set it, a negative value is refused")
    func recallCacheMemories() throws {
        #expect(try ProxyConfiguration.load(file: nil, environment: [:]).memory.recallCacheMemories == 500_000)
        let path = try writeTemp("[memory]\nrecall_cache_memories = 1000\n")
        #expect(try ProxyConfiguration.load(file: path, environment: [:]).memory.recallCacheMemories == 1000)
        let environment = ["MEMPROXY_MEMORY_RECALL_CACHE_MEMORIES": "25"]
        #expect(try ProxyConfiguration.load(file: path, environment: environment).memory.recallCacheMemories == 25)
        let negative = try writeTemp("[memory]\nrecall_cache_memories = -1\n")
        #expect(throws: (any Error).self) { try ProxyConfiguration.load(file: negative, environment: [:]) }
    }

    @Test("precedence: file < environment < flags")
    func precedence() throws {
        let path = try writeTemp(
            """
            # comment
            [server]
            listen = "127.0.0.1:9001"
            max_body_bytes = 1000

            [upstream]
            url = "http://file.example:1"
            timeout_seconds = 5
            api_key = "sk-file"

            [log]
            level = "debug"
            format = "text"
            """
        )
        let fileOnly = try ProxyConfiguration.load(file: path, environment: [:])
        #expect(fileOnly.server.listen.port == 9001)
        #expect(fileOnly.server.maxBodyBytes == 1000)
        #expect(fileOnly.upstream.url == "http://file.example:1")
        #expect(fileOnly.upstream.timeoutSeconds == 5)
        #expect(fileOnly.upstream.apiKey == "sk-file")
        #expect(fileOnly.log.level == .debug)
        #expect(fileOnly.log.format == .text)

        let environment = [
            "MEMPROXY_SERVER_LISTEN": "127.0.0.1:9002",
            "MEMPROXY_UPSTREAM_URL": "http://env.example:2",
            "MEMPROXY_SERVER_MAX_BODY_BYTES": "2000",
            "MEMPROXY_UPSTREAM_API_KEY": "sk-env",
        ]
        let withEnv = try ProxyConfiguration.load(file: path, environment: environment)
        #expect(withEnv.server.listen.port == 9002)
        #expect(withEnv.upstream.url == "http://env.example:2")
        #expect(withEnv.server.maxBodyBytes == 2000)
        #expect(withEnv.upstream.apiKey == "sk-env")
        #expect(withEnv.upstream.timeoutSeconds == 5)

        let withFlags = try ProxyConfiguration.load(
            file: path,
            environment: environment,
            overrides: ["server.listen": "[::1]:9003", "upstream.url": "http://flag.example:3"]
        )
        #expect(withFlags.server.listen == ListenAddress(host: "::1", port: 9003))
        #expect(withFlags.upstream.url == "http://flag.example:3")
        #expect(withFlags.server.maxBodyBytes == 2000)
    }

    @Test("bad input is one clear error naming the key", arguments: [
        ("[server]\nlisten = 8080\n", "server.listen must be a string"),
        ("[server]\nlisten = \"nohost\"\n", "is not HOST:PORT"),
        ("[server]\nlistne = \"127.0.0.1:1\"\n", "unknown key listne in [server]"),
        ("[srever]\nlisten = \"127.0.0.1:1\"\n", "unknown section [srever]"),
        ("[upstream]\nurl = \"ftp://x\"\n", "is not an http(s) URL"),
        ("[log]\nlevel = \"loud\"\n", "log.level \"loud\""),
        ("[server\nlisten=", "is not valid TOML"),
    ])
    func invalidFile(text: String, expected: String) throws {
        let path = try writeTemp(text)
        #expect {
            _ = try ProxyConfiguration.load(file: path, environment: [:])
        } throws: { error in
            "\(error)".contains(expected)
        }
    }

    @Test("recall knobs: defaults are the measured best, file and environment set them, bad values are refused")
    func recallKnobs() throws {
        let defaults = try ProxyConfiguration.load(file: nil, environment: [:])
        #expect(defaults.recall.nearWeight == 0.5)
        #expect(defaults.recall.temporalBoost == 1.5)
        #expect(defaults.recall.feedbackDocuments == 0)
        let path = try writeTemp("[recall]\nnear_weight = 0.7\nfeedback_documents = 3\n")
        let configured = try ProxyConfiguration.load(
            file: path, environment: ["MEMPROXY_RECALL_FEEDBACK_DOCUMENTS": "5", "MEMPROXY_RECALL_DATE_WEIGHT": "0"])
        #expect(configured.recall.nearWeight == 0.7)
        #expect(configured.recall.feedbackDocuments == 5)
        #expect(configured.recall.dateWeight == 0)
        #expect {
            _ = try ProxyConfiguration.load(file: nil, environment: ["MEMPROXY_RECALL_NEAR_WEIGHT": "-1"])
        } throws: { error in
            "\(error)".contains("recall.near_weight")
        }
    }

    @Test("an invalid environment value names the variable")
    func invalidEnvironment() {
        #expect {
            _ = try ProxyConfiguration.load(file: nil, environment: ["MEMPROXY_SERVER_MAX_BODY_BYTES": "lots"])
        } throws: { error in
            "\(error)".contains("MEMPROXY_SERVER_MAX_BODY_BYTES")
        }
    }

    @Test("an unreadable config file is reported with its path")
    func missingFile() {
        #expect {
            _ = try ProxyConfiguration.load(file: "/nonexistent/proxy.conf", environment: [:])
        } throws: { error in
            "\(error)".contains("/nonexistent/proxy.conf")
        }
    }
}
