import FakeUpstream
import Foundation
import Logging
import MemProxy
import MemProxyStore
import MemProxyUpstream
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

/// A fresh SQLite store in a temporary file.
func makeStore() throws -> SQLiteMemoryStore {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("memproxy-test-\(UUID().uuidString).db").path
    return try SQLiteMemoryStore(configuration: .init(path: path), logger: quietLogger)
}

/// Polls `condition` until it holds (the writer commits asynchronously); fails after `seconds`.
func eventually(
    _ what: String,
    within seconds: Double = 30,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        await Task.yield()
        try await Task.sleep(for: .milliseconds(1))
    }
    throw DeadlineExceeded(what: what)
}

func chatBody(_ userText: String, stream: Bool = false, system: String? = nil) -> String {
    var messages: [[String: String]] = []
    if let system { messages.append(["role": "system", "content": system]) }
    messages.append(["role": "user", "content": userText])
    let object: [String: Any] = ["model": "fake-model", "messages": messages, "stream": stream]
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}

extension ProxyHarness {
    func chat(
        _ userText: String,
        session: String?,
        stream: Bool = false,
        extraHeaders: [(name: String, value: String)] = []
    ) async throws -> (response: UpstreamResponse, body: String) {
        var headers: [(name: String, value: String)] = [("Content-Type", "application/json")]
        if let session { headers.append(("X-Session-Id", session)) }
        return try await self.fetch(
            "POST", "/v1/chat/completions", headers: headers + extraHeaders, body: chatBody(userText, stream: stream))
    }

    /// The body the fake upstream received for the newest chat completion.
    var lastUpstreamBody: String {
        String(decoding: self.fake.requests.last { $0.target == "/v1/chat/completions" }?.body ?? [], as: UTF8.self)
    }
}

@Suite("Memory", .timeLimit(.minutes(1)))
struct MemoryTests {
    @Test("a fact told in one request is injected into the next request of the same session, and no other")
    func recallAcrossRequests() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let (first, _) = try await proxy.chat("My dog is called Rex and he loves tennis balls.", session: "alice")
            #expect(first.status == 200)
            #expect(first.header("X-Memory-Session") == "alice")
            #expect(first.header("X-Memory-Injected") == "0")
            try await eventually("the exchange to be recallable") {
                try await !store.recall(session: "alice", query: "dog tennis", limit: 5).isEmpty
            }

            let (second, _) = try await proxy.chat("What does my dog love to play with?", session: "alice")
            #expect(second.status == 200)
            let injected = Int(second.header("X-Memory-Injected") ?? "") ?? 0
            #expect(injected >= 1)
            #expect(Int(second.header("X-Memory-Tokens") ?? "") ?? 0 > 0)
            #expect(second.header("X-Memory-Recall-Ms") != nil)
            let upstreamBody = try jsonObject(proxy.lastUpstreamBody)
            let messages = try #require(upstreamBody["messages"] as? [[String: Any]])
            #expect(messages.count == 2)
            #expect(messages.first?["role"] as? String == "system")
            let system = try #require(messages.first?["content"] as? String)
            #expect(system.hasPrefix("<memory>\n"))
            #expect(system.contains("user: My dog is called Rex and he loves tennis balls."))
            #expect(system.hasSuffix("</memory>"))
            #expect(messages.last?["content"] as? String == "What does my dog love to play with?")

            let (other, _) = try await proxy.chat("What does my dog love to play with?", session: "bob")
            #expect(other.header("X-Memory-Injected") == "0")
            #expect(!proxy.lastUpstreamBody.contains("<memory>"))
            #expect(!proxy.lastUpstreamBody.contains("Rex"))

            await store.flush()
            let records = try store.injections(session: "alice", limit: 10)
            #expect(records.count == 1)
            #expect(records.first?.block == system)
            #expect(try store.injections(session: "bob", limit: 10).isEmpty)
        }
    }

    @Test("a streamed reply is accumulated and stored with the user message")
    func streamedReplyStored() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let (response, text) = try await proxy.chat("Tell me about the Andromeda galaxy", session: "s-stream", stream: true)
            #expect(response.status == 200)
            #expect(text.hasSuffix("data: [DONE]\n\n"))
            try await eventually("both halves stored") {
                try store.memories(session: "s-stream").count == 2
            }
            let memories = try store.memories(session: "s-stream")
            #expect(Set(memories.map(\.content)) == ["Tell me about the Andromeda galaxy", "echo: Tell me about the Andromeda galaxy"])
            #expect(Set(memories.compactMap(\.role)) == ["user", "assistant"])
            #expect(memories.allSatisfy { $0.type == .episodic && $0.exchangeID == memories[0].exchangeID })
        }
    }

    @Test("a client that disconnects mid-stream: the user message and the partial reply are stored, marked incomplete")
    func disconnectMidStream() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let response = try await proxy.send(
                "POST", "/v1/chat/completions",
                headers: [
                    ("X-Session-Id", "s-cut"), ("X-Fake-Gate", "1"), ("X-Fake-Delay-Ms", "10"),
                    ("Content-Type", "application/json"),
                ],
                body: chatBody(
                    "Describe the rings of Saturn in detail " + String(repeating: "and then some more ", count: 40),
                    stream: true))
            var iterator = response.body.makeAsyncIterator()
            _ = try await response.read(until: "echo: ", iterator: &iterator)
            response.cancel()
            proxy.fake.openGate()
            try await eventually("the cut-short exchange to be stored") {
                try store.memories(session: "s-cut").count == 2
            }
            let memories = try store.memories(session: "s-cut")
            let user = try #require(memories.first { $0.role == "user" })
            let assistant = try #require(memories.first { $0.role == "assistant" })
            #expect(user.content.hasPrefix("Describe the rings of Saturn in detail"))
            #expect(assistant.content.hasPrefix("echo:"))
            // Some chunks may still have been written before the disconnect was noticed, but not the whole reply.
            #expect(assistant.content.count < ("echo: " + user.content).count)
            #expect(assistant.metadata.contains("\"incomplete\":true"))
            #expect(!user.metadata.contains("incomplete"))
        }
    }

    @Test("a client retry of the same request is stored once")
    func retryStoredOnce() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            _ = try await proxy.chat("Remember that my locker code is 4711", session: "s-retry")
            _ = try await proxy.chat(
                "Remember that my locker code is 4711", session: "s-retry", extraHeaders: [("x-stainless-retry-count", "1")])
            #expect(proxy.fake.requests.count == 2)
            await store.flush()
            #expect(try store.memories(session: "s-retry").count == 2)
            _ = try await proxy.chat("And my bike lock code is 1234", session: "s-retry")
            await store.flush()
            #expect(try store.memories(session: "s-retry").count == 4)
        }
    }

    @Test("X-Memory-Mode: off, read and write do what they say; memory headers never reach the upstream")
    func memoryModes() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            // write: stored, not injected.
            let (write, _) = try await proxy.chat(
                "The launch code word is pineapple", session: "modes", extraHeaders: [("X-Memory-Mode", "write")])
            #expect(write.header("X-Memory-Injected") == "0")
            try await eventually("write-mode exchange stored") { try store.memories(session: "modes").count == 2 }
            let recorded = try #require(proxy.fake.requests.last)
            #expect(recorded.header("X-Session-Id") == nil)
            #expect(recorded.header("X-Memory-Mode") == nil)

            // read: injected, not stored.
            let (read, _) = try await proxy.chat(
                "What is the launch code word?", session: "modes", extraHeaders: [("X-Memory-Mode", "READ")])
            #expect(Int(read.header("X-Memory-Injected") ?? "") ?? 0 >= 1)
            #expect(proxy.lastUpstreamBody.contains("pineapple"))

            // off: plain proxy, nothing injected or stored, no memory headers.
            let (off, _) = try await proxy.chat(
                "What is the launch code word?", session: "modes", extraHeaders: [("X-Memory-Mode", "off")])
            #expect(off.header("X-Memory-Session") == nil)
            #expect(!proxy.lastUpstreamBody.contains("pineapple"))

            await store.flush()
            #expect(try store.memories(session: "modes").count == 2)

            let (bad, text) = try await proxy.chat("hi", session: "modes", extraHeaders: [("X-Memory-Mode", "sometimes")])
            #expect(bad.status == 400)
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["code"] as? String == "invalid_memory_mode")
            #expect(error["param"] as? String == "X-Memory-Mode")
        }
    }

    @Test("invalid session ids and bodies get a 400 and nothing is forwarded or stored")
    func badInput() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            for session in [String(repeating: "a", count: 201), "tab\there"] {
                let (response, text) = try await proxy.chat("hello", session: session)
                #expect(response.status == 400)
                let error = try #require(try jsonObject(text)["error"] as? [String: Any])
                #expect(error["code"] as? String == "invalid_session_id")
                #expect(error["param"] as? String == "X-Session-Id")
            }
            let (ok200, _) = try await proxy.chat("hello", session: String(repeating: "a", count: 200))
            #expect(ok200.status == 200)
            let before = proxy.fake.requests.count
            for body in ["{not json", "[1,2]", #"{"model":"m"}"#, #"{"model":"m","messages":"hi"}"#] {
                let (response, text) = try await proxy.fetch(
                    "POST", "/v1/chat/completions", headers: [("X-Session-Id", "bad-body")], body: body)
                #expect(response.status == 400, "\(body)")
                let error = try #require(try jsonObject(text)["error"] as? [String: Any])
                #expect(error["type"] as? String == "invalid_request_error")
            }
            #expect(proxy.fake.requests.count == before)
            await store.flush()
            #expect(try store.memories(session: "bad-body").isEmpty)
        }
    }

    @Test("memory.require_session rejects chat completions without a session")
    func requireSession() async throws {
        try await withProxy(memoryStore: try makeStore(), configure: { config, _ in config.memory.requireSession = true }) {
            proxy in
            let (response, text) = try await proxy.chat("hello", session: nil)
            #expect(response.status == 400)
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["code"] as? String == "session_required")
            #expect(proxy.fake.requests.isEmpty)
        }
    }

    @Test("without a session the request is proxied byte for byte, with no memory headers")
    func noSession() async throws {
        try await withProxy(memoryStore: try makeStore()) { proxy in
            let body = chatBody("hello there")
            let (response, _) = try await proxy.fetch("POST", "/v1/chat/completions", body: body)
            #expect(response.status == 200)
            #expect(response.header("X-Memory-Session") == nil)
            #expect(proxy.lastUpstreamBody == body)
        }
    }
}

/// A store whose every operation fails, to prove the proxy fails open.
final class FailingStore: MemoryStore {
    struct Broken: Error {}
    func recall(session: String, query: String, limit: Int) async throws -> [RecalledMemory] { throw Broken() }
    func submit(_ exchange: ExchangeRecord) {}
    func submit(_ injection: InjectionRecord) {}
    func flush() async {}
}

/// A store whose recall never answers in time (think: a database locked by another process).
final class StalledStore: MemoryStore {
    func recall(session: String, query: String, limit: Int) async throws -> [RecalledMemory] {
        try await Task.sleep(for: .seconds(60))
        return []
    }
    func submit(_ exchange: ExchangeRecord) {}
    func submit(_ injection: InjectionRecord) {}
    func flush() async {}
}

@Suite("Memory store failures", .timeLimit(.minutes(1)))
struct StoreFailureTests {
    @Test("a recall slower than memory.recall_timeout_ms fails open instead of holding the request")
    func stalledRecallFailsOpen() async throws {
        try await withProxy(memoryStore: StalledStore(), configure: { config, _ in config.memory.recallTimeoutMs = 100 }) {
            proxy in
            let started = ContinuousClock.now
            let (response, text) = try await proxy.chat("hello", session: "s")
            #expect(response.status == 200)
            #expect(response.header("X-Memory-Error") == "store_unavailable")
            #expect(text.contains("echo: hello"))
            #expect(ContinuousClock.now - started < .seconds(30))
        }
    }

    @Test("fail-open: a broken store forwards without memory and says so")
    func failOpen() async throws {
        try await withProxy(memoryStore: FailingStore()) { proxy in
            let body = chatBody("hello")
            let (response, text) = try await proxy.fetch(
                "POST", "/v1/chat/completions", headers: [("X-Session-Id", "s")], body: body)
            #expect(response.status == 200)
            #expect(response.header("X-Memory-Error") == "store_unavailable")
            #expect(text.contains("echo: hello"))
            #expect(proxy.lastUpstreamBody == body)
        }
    }

    @Test("fail_open = false: a broken store answers 503 memory_unavailable")
    func failClosed() async throws {
        try await withProxy(memoryStore: FailingStore(), configure: { config, _ in config.memory.failOpen = false }) { proxy in
            let (response, text) = try await proxy.chat("hello", session: "s")
            #expect(response.status == 503)
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["code"] as? String == "memory_unavailable")
            #expect(proxy.fake.requests.isEmpty)
        }
    }
}

/// A store whose write queue stays full: recall works, `waitForWriteCapacity` always times out. Counts submits.
final class BackloggedStore: MemoryStore {
    let submits = Mutex(0)
    let waits = Mutex(0)
    func recall(session: String, query: String, limit: Int) async throws -> [RecalledMemory] {
        [RecalledMemory(memory: Memory(sessionID: session, type: .semantic, content: "the user's dog is Rex", createdAt: Date(), source: "api"), score: 1)]
    }
    func submit(_ exchange: ExchangeRecord) { submits.withLock { $0 += 1 } }
    func submit(_ injection: InjectionRecord) { submits.withLock { $0 += 1 } }
    func flush() async {}
    func waitForWriteCapacity(timeout: Duration) async -> Bool {
        waits.withLock { $0 += 1 }
        return false
    }
}

@Suite("Write backlog", .timeLimit(.minutes(1)))
struct WriteBacklogTests {
    @Test("a full write queue: the request is proxied with memory injected, nothing is stored, and the response says so")
    func backlogFailsOpenWithoutStoring() async throws {
        let store = BackloggedStore()
        try await withProxy(memoryStore: store) { proxy in
            let (response, text) = try await proxy.chat("what is my dog called?", session: "s")
            #expect(response.status == 200)
            #expect(response.header("X-Memory-Error") == "store_backlog")
            #expect(response.header("X-Memory-Injected") == "1")
            #expect(text.contains("echo: what is my dog called?"))
            #expect(proxy.lastUpstreamBody.contains("the user's dog is Rex"))
            #expect(store.waits.withLock { $0 } == 1)
            #expect(store.submits.withLock { $0 } == 0)
        }
    }

    @Test("a full write queue with fail_open = false answers 503 memory_unavailable and forwards nothing")
    func backlogFailsClosed() async throws {
        try await withProxy(memoryStore: BackloggedStore(), configure: { config, _ in config.memory.failOpen = false }) { proxy in
            let (response, text) = try await proxy.chat("hello", session: "s")
            #expect(response.status == 503)
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["code"] as? String == "memory_unavailable")
            #expect((error["message"] as? String)?.contains("max_queued_writes") == true)
            #expect(proxy.fake.requests.isEmpty)
        }
    }
}
