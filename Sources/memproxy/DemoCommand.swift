import ArgumentParser
import FakeUpstream
import Foundation
import Logging
import MemProxy
import ServiceLifecycle

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `memproxy demo`: memproxy in front of the built-in echo upstream, a scripted conversation in two sessions,
/// and, step by step, what the client sent, what memproxy injected and what it stored. No key, no network.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "See memproxy work in ten seconds: a scripted conversation against a built-in echo model."
    )

    @Option(help: "Keep the demo's memory database at this path (default: a temporary file, removed afterwards).")
    var database: String?

    func run() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "memproxy-demo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = self.database ?? directory.appendingPathComponent("demo.db").path
        let quiet = Logger(label: "memproxy-demo") { _ in SwiftLogNoOpLogHandler() }

        let fake = FakeUpstream()
        let (ports, portContinuation) = AsyncStream.makeStream(of: (String, Int).self)
        let fakeApp = fake.makeApplication(logger: quiet) { port in portContinuation.yield(("upstream", port)) }
        var iterator = ports.makeAsyncIterator()
        try await withThrowingTaskGroup(of: Void.self) { group in
            let fakeGroup = ServiceGroup(services: [fakeApp], logger: quiet)
            group.addTask { try await fakeGroup.run() }
            guard let (_, upstreamPort) = await iterator.next() else { return }

            var configuration = ProxyConfiguration()
            configuration.server.listen = ListenAddress(host: "127.0.0.1", port: 0)
            configuration.upstream.url = "http://127.0.0.1:\(upstreamPort)"
            configuration.memory.database = path
            let app = try buildApplication(configuration: configuration, logger: quiet) { port in
                portContinuation.yield(("memproxy", port))
            }
            let proxyGroup = ServiceGroup(services: [app], logger: quiet)
            group.addTask { try await proxyGroup.run() }
            guard let (_, proxyPort) = await iterator.next() else { return }

            let script = DemoScript(fake: fake, base: "http://127.0.0.1:\(proxyPort)")
            print("memproxy demo: memproxy on http://127.0.0.1:\(proxyPort) in front of a built-in echo model")
            print("(http://127.0.0.1:\(upstreamPort), it answers \"echo: <your message>\"); database \(path)")
            do {
                try await script.run()
            } catch {
                await proxyGroup.triggerGracefulShutdown()
                await fakeGroup.triggerGracefulShutdown()
                throw error
            }
            await proxyGroup.triggerGracefulShutdown()
            await fakeGroup.triggerGracefulShutdown()
            try await group.waitForAll()
        }
    }
}

/// The scripted conversation, printed step by step.
struct DemoScript {
    let fake: FakeUpstream
    let base: String

    func run() async throws {
        step(1, "alice gives memproxy a standing instruction through the memory API")
        let instruction = #"{"type":"procedural","content":"Answer in one short sentence."}"#
        print("  client   → POST /memory/v1/sessions/alice/memories \(instruction)")
        let (status, added) = try await request("POST", "/memory/v1/sessions/alice/memories", body: instruction)
        print("  memproxy ← \(status) \(added)")

        step(2, "alice tells the assistant something about herself")
        try await chat("alice", "My dog is called Rex and he loves tennis balls.")
        try await waitForMemories("alice", count: 3)

        step(3, "later, alice asks about it: memproxy recalls the exchange and injects it")
        try await chat("alice", "What does my dog like to play with?")
        try await waitForMemories("alice", count: 5)

        step(4, "bob asks the same question: sessions never see each other's memories")
        try await chat("bob", "What does my dog like to play with?")
        try await waitForMemories("bob", count: 2)

        step(5, "what memproxy stored (GET /memory/v1/sessions/{session}/memories)")
        for session in ["alice", "bob"] {
            print("  \(session):")
            for memory in try await memories(session).reversed() {
                let type = memory["type"] as? String ?? ""
                let label = memory["role"] as? String ?? (type == "procedural" ? "instruction" : "fact")
                print("    [\(type)] \(label): \(memory["content"] as? String ?? "")")
            }
        }

        step(6, "preview what a request would get (POST /memory/v1/sessions/alice/recall)")
        let (_, recall) = try await request(
            "POST", "/memory/v1/sessions/alice/recall", body: #"{"query":"Which toy does Rex want?"}"#)
        let context = try object(recall)["context"] as? String ?? ""
        print(indent(context.isEmpty ? "(nothing)" : context))

        print("\nDone. Inspect a kept database with: memproxy memories list --session alice --database PATH")
        print(
            "Use it for real: memproxy serve --upstream https://api.openai.com, then send X-Session-Id with your requests."
        )
    }

    private func step(_ number: Int, _ title: String) {
        print("\n── \(number). \(title)")
    }

    /// One chat completion in `session`, showing what the client sent, what the upstream received and the reply.
    private func chat(_ session: String, _ text: String) async throws {
        let body = try JSONSerialization.data(
            withJSONObject: ["model": "fake-model", "messages": [["role": "user", "content": text]]],
            options: [.sortedKeys]
        )
        print("  client   → POST /v1/chat/completions  X-Session-Id: \(session)")
        print("             user: \(text)")
        var request = URLRequest(url: URL(string: base + "/v1/chat/completions")!)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(session, forHTTPHeaderField: "X-Session-Id")
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as? HTTPURLResponse
        let injected = http?.value(forHTTPHeaderField: "X-Memory-Injected") ?? "0"
        let sent = fake.requests.last { $0.target == "/v1/chat/completions" }
        let messages = try object(String(decoding: sent?.body ?? [], as: UTF8.self))["messages"] as? [[String: Any]]
        let system = messages?.first { $0["role"] as? String == "system" }?["content"] as? String
        print("  memproxy → upstream, with \(injected) memories injected (X-Memory-Injected: \(injected))")
        if let system { print(indent(system)) } else { print("             (no memory block: nothing relevant yet)") }
        let reply = try object(String(decoding: data, as: UTF8.self))["choices"] as? [[String: Any]]
        let content = (reply?.first?["message"] as? [String: Any])?["content"] as? String ?? ""
        print("  client   ← \(content)")
    }

    /// The writer stores each exchange just after the response; wait (at most 5 s) until it is there.
    private func waitForMemories(_ session: String, count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while try await memories(session).count < count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        print(
            "  memproxy stored the exchange: session \(session) now has \(try await memories(session).count) memories")
    }

    private func memories(_ session: String) async throws -> [[String: Any]] {
        let (_, text) = try await request("GET", "/memory/v1/sessions/\(session)/memories")
        return try object(text)["data"] as? [[String: Any]] ?? []
    }

    private func request(_ method: String, _ path: String, body: String? = nil) async throws -> (Int, String) {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        request.httpBody = body.map { Data($0.utf8) }
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    private func object(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
    }

    private func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "             " + $0 }.joined(
            separator: "\n")
    }
}
