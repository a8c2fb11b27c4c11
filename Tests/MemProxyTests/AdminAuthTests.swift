import Foundation
import InMemoryLogging
import Logging
import MemProxyUpstream
import NIOCore
import Testing

@testable import MemProxy

@Suite("Memory API access", .timeLimit(.minutes(1)))
struct AdminAuthTests {
    @Test("with admin.api_key set, every /memory/v1 request needs the bearer key (401 otherwise)")
    func keyRequired() async throws {
        let handler = InMemoryLogHandler()
        let logger = Logger(label: "memproxy") { _ in handler }
        try await withProxy(
            logger: logger, memoryStore: try makeStore(),
            configure: { config, _ in
                config.admin.apiKey = "admin-secret-key"
            }
        ) { proxy in
            for authorization in [
                nil, "Bearer wrong-key", "Bearer admin-secret-ke", "Basic admin-secret-key", "Bearer ",
            ] {
                let headers = authorization.map { [(name: "Authorization", value: $0)] } ?? []
                let response = try await proxy.api("GET", "/sessions", headers: headers)
                #expect(response.status == 401, "\(authorization ?? "none")")
                #expect(response.errorCode == "unauthorized")
                let denied = try await proxy.api("POST", "/sessions/s/memories", #"{"content":"x"}"#, headers: headers)
                #expect(denied.status == 401)
            }
            for authorization in ["Bearer admin-secret-key", "bearer admin-secret-key"] {
                let response = try await proxy.api("GET", "/sessions", headers: [("Authorization", authorization)])
                #expect(response.status == 200, "\(authorization)")
            }
            // The proxy itself is not behind the admin key.
            let (chat, _) = try await proxy.chat("hello", session: "s")
            #expect(chat.status == 200)
            for entry in handler.entries {
                #expect(!"\(entry.message) \(entry.metadata)".contains("admin-secret"), "a log line leaked the key")
            }
        }
    }

    @Test("without a key, loopback clients are answered")
    func loopbackWithoutKey() async throws {
        try await withProxy(memoryStore: try makeStore()) { proxy in
            let response = try await proxy.api("GET", "/sessions")
            #expect(response.status == 200)
        }
    }

    @Test("without a key, non-loopback clients get 403; with a key, the key decides wherever the client is")
    func accessRule() throws {
        let remote = try SocketAddress(ipAddress: "10.1.2.3", port: 40000)
        let local = try SocketAddress(ipAddress: "127.0.0.1", port: 40000)
        #expect(AdminAuth.check(authorization: nil, remote: remote, apiKey: nil)?.code == "forbidden")
        #expect(AdminAuth.check(authorization: nil, remote: remote, apiKey: nil)?.code == "forbidden")
        #expect(AdminAuth.check(authorization: nil, remote: nil, apiKey: nil)?.code == "forbidden")
        #expect(AdminAuth.check(authorization: nil, remote: local, apiKey: nil) == nil)
        #expect(AdminAuth.check(authorization: "Bearer k", remote: remote, apiKey: "k") == nil)
        #expect(AdminAuth.check(authorization: nil, remote: local, apiKey: "k")?.code == "unauthorized")
        #expect(AdminAuth.check(authorization: "Bearer x", remote: local, apiKey: "k")?.code == "unauthorized")
    }

    @Test("loopback is 127.0.0.0/8, ::1 and IPv4-mapped 127.x; nothing else")
    func loopbackAddresses() throws {
        for ip in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
            #expect(AdminAuth.isLoopback(try SocketAddress(ipAddress: ip, port: 1)), "\(ip)")
        }
        for ip in ["10.0.0.1", "192.168.1.20", "128.0.0.1", "::2", "::ffff:10.0.0.1", "fe80::1"] {
            #expect(!AdminAuth.isLoopback(try SocketAddress(ipAddress: ip, port: 1)), "\(ip)")
        }
        #expect(!AdminAuth.isLoopback(nil))
        #expect(AdminAuth.isLoopbackHost("127.0.0.1") && AdminAuth.isLoopbackHost("localhost"))
        #expect(!AdminAuth.isLoopbackHost("0.0.0.0") && !AdminAuth.isLoopbackHost("::"))
    }

    @Test("key comparison: equal only for identical bytes, whatever the lengths")
    func constantTimeEquals() {
        #expect(AdminAuth.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!AdminAuth.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!AdminAuth.constantTimeEquals(Array("abc".utf8), Array("abcd".utf8)))
        #expect(!AdminAuth.constantTimeEquals([], Array(repeating: 0, count: 256)))
        #expect(AdminAuth.bearerToken("Bearer  tok") == "tok")
        #expect(AdminAuth.bearerToken("Bearertok") == nil)
    }

    @Test("a warning is logged at start when listening on a non-loopback address without a key")
    func startupWarning() throws {
        func warnings(listen: String, key: String?) throws -> [String] {
            let handler = InMemoryLogHandler()
            let logger = Logger(label: "memproxy") { _ in handler }
            var configuration = ProxyConfiguration()
            configuration.server.listen = try #require(ListenAddress(parsing: listen))
            configuration.admin.apiKey = key
            _ = try buildApplication(configuration: configuration, logger: logger, memoryStore: try makeStore())
            return handler.entries.filter { $0.level == .warning }.map(\.message.description)
        }
        let unprotected = try warnings(listen: "0.0.0.0:0", key: nil)
        #expect(unprotected.count == 1)
        #expect(unprotected.first?.contains("admin.api_key") == true)
        #expect(try warnings(listen: "0.0.0.0:0", key: "k").isEmpty)
        #expect(try warnings(listen: "127.0.0.1:0", key: nil).isEmpty)
    }

    @Test("admin.api_key comes from [admin] in the file or MEMPROXY_ADMIN_API_KEY")
    func configuration() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("admin-\(UUID().uuidString).conf")
        try Data("[admin]\napi_key = \"from-file\"\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(try ProxyConfiguration.load(file: file.path, environment: [:]).admin.apiKey == "from-file")
        let env = try ProxyConfiguration.load(file: file.path, environment: ["MEMPROXY_ADMIN_API_KEY": "from-env"])
        #expect(env.admin.apiKey == "from-env")
        #expect(try ProxyConfiguration.load(file: nil, environment: [:]).admin.apiKey == nil)
        // The checked-in proxy.conf stays loadable with its [admin] section.
        let repoConf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../proxy.conf")
        #expect(try ProxyConfiguration.load(file: repoConf.path, environment: [:]).admin.apiKey == nil)
    }
}
