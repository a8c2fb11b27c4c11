import FakeUpstream
import Foundation
import MemProxy
import MemProxyStore
import MemProxyUpstream
import NIOCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

// Upstream faults the proxy must survive (upstream down, slow and mid-stream drops of plain paths are in
// ProxyTests; a throwing store is in MemoryTests): an upstream that never answers or hangs up, chat completions
// that fail, break off, trickle or are huge, with memory on.

@Suite("Upstream faults", .timeLimit(.minutes(2)))
struct FaultTests {
    @Test("an upstream that accepts the connection and never answers gives 504 upstream_timeout, nothing stored")
    func upstreamNeverAnswers() async throws {
        let silent = try LoopbackListener(accepting: false)
        defer { silent.close() }
        let store = try makeStore()
        try await withProxy(
            memoryStore: store,
            configure: { config, _ in
                config.upstream.url = "http://127.0.0.1:\(silent.port)"
                config.upstream.timeoutSeconds = 1
            }
        ) { proxy in
            let start = ContinuousClock.now
            let (response, text) = try await proxy.chat("Will anybody answer me?", session: "s-silent")
            #expect(response.status == 504)
            #expect(ContinuousClock.now - start < .seconds(10))
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["code"] as? String == "upstream_timeout")
            #expect(error["type"] as? String == "server_error")
            await store.flush()
            #expect(try store.memories(session: "s-silent").isEmpty)
        }
    }

    @Test("an upstream that accepts and hangs up without answering gives 502 upstream_disconnected")
    func upstreamHangsUp() async throws {
        let rude = try LoopbackListener(accepting: true)
        defer { rude.close() }
        try await withProxy(configure: { config, _ in config.upstream.url = "http://127.0.0.1:\(rude.port)" }) {
            proxy in
            let (response, text) = try await proxy.chat("hello?", session: "s-rude")
            #expect(response.status == 502)
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["code"] as? String == "upstream_disconnected")
            // The proxy itself is fine.
            let (health, _) = try await proxy.fetch("GET", "/healthz")
            #expect(health.status == 200)
        }
    }

    @Test(
        "chat completion 500/503 with memory on pass through byte for byte and are never stored", arguments: [500, 503])
    func chatUpstreamErrors(code: Int) async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let (response, text) = try await proxy.chat(
                "Remember the number 77", session: "s-err", extraHeaders: [("X-Fake-Status", "\(code)")])
            #expect(response.status == code)
            #expect(
                text
                    == #"{"error":{"message":"fake upstream error \#(code)","type":"fake_error","param":null,"code":"fake_\#(code)"}}"#
            )
            #expect(response.header("x-request-id") == "req_fake_\(code)")
            #expect(response.header("X-Memory-Session") == "s-err")
            // A later success in the same session is stored; the failed exchange never is.
            _ = try await proxy.chat("sentinel", session: "s-err")
            try await eventually("the sentinel exchange") { try store.memories(session: "s-err").count >= 2 }
            await store.flush()
            #expect(try store.memories(session: "s-err").map(\.content).sorted() == ["echo: sentinel", "sentinel"])
        }
    }

    @Test("an upstream that dies mid-stream of a chat completion: SSE error event, partial reply marked incomplete")
    func chatStreamDropped() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let question = "The quick brown fox jumps over the lazy dog again"
            let (response, text) = try await proxy.chat(
                question, session: "s-drop", stream: true, extraHeaders: [("X-Fake-Drop-After", "4")])
            #expect(response.status == 200)
            #expect(text.contains(#""content":"quick "#))
            #expect(!text.contains("[DONE]"))
            let events = text.split(separator: "\n\n")
            let last = try #require(events.last)
            let error = try #require(try jsonObject(String(last.dropFirst("data: ".count)))["error"] as? [String: Any])
            #expect(error["code"] as? String == "upstream_disconnected")
            #expect(error["type"] as? String == "server_error")

            try await eventually("the cut-short exchange") { try store.memories(session: "s-drop").count == 2 }
            var memories = try store.memories(session: "s-drop")
            let partial = try #require(memories.first { $0.role == "assistant" })
            #expect(partial.content == "echo: The quick ")
            #expect(partial.metadata.contains(#""incomplete":true"#))
            #expect(memories.first { $0.role == "user" }?.content == question)

            // The client's retry of the same request completes that exchange in place (issue 11: the user message
            // is not stored twice).
            let (retry, retryText) = try await proxy.chat(question, session: "s-drop", stream: true)
            #expect(retry.status == 200)
            #expect(retryText.hasSuffix("data: [DONE]\n\n"))
            try await eventually("the retried exchange") {
                try store.memories(session: "s-drop").contains { $0.id == partial.id && !$0.isIncompleteReply }
            }
            memories = try store.memories(session: "s-drop")
            #expect(memories.map(\.content) == [question, "echo: " + question])
            // The store still answers queries over what was stored.
            let recalled = try await store.recall(session: "s-drop", query: "lazy dog", limit: 10)
            #expect(recalled.count >= 2)
        }
    }

    @Test("an upstream that answers byte by byte is relayed intact and stored whole", arguments: [true, false])
    func byteByByte(stream: Bool) async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let question = "Slow and steady wins the race"
            let (reference, expected) = try await proxy.chat(question, session: nil, stream: stream)
            #expect(reference.status == 200)
            let (response, text) = try await proxy.chat(
                question, session: "s-slow", stream: stream, extraHeaders: [("X-Fake-Byte-Delay-Ms", "1")])
            #expect(response.status == 200)
            #expect(text == expected)
            try await eventually("the trickled exchange") { try store.memories(session: "s-slow").count == 2 }
            let assistant = try #require(try store.memories(session: "s-slow").first { $0.role == "assistant" })
            #expect(assistant.content == "echo: " + question)
            #expect(!assistant.metadata.contains("incomplete"))
        }
    }

    @Test("a 20 MB streamed reply is relayed intact; the stored reply is capped at 1 MiB")
    func hugeStream() async throws {
        let store = try makeStore()
        let size = 20_000_000
        try await withProxy(memoryStore: store) { proxy in
            let (response, text) = try await proxy.chat(
                "Write me a very long essay", session: "s-huge", stream: true,
                extraHeaders: [("X-Fake-Reply-Bytes", "\(size)")])
            #expect(response.status == 200)
            var content = ""
            content.reserveCapacity(size)
            for event in text.split(separator: "\n\n") where event != "data: [DONE]" {
                let chunk = try jsonObject(String(event.dropFirst("data: ".count)))
                let choices = try #require(chunk["choices"] as? [[String: Any]])
                for choice in choices {
                    if let piece = (choice["delta"] as? [String: Any])?["content"] as? String { content += piece }
                }
            }
            #expect(text.hasSuffix("data: [DONE]\n\n"))
            let filler = FakeUpstream.filler(bytes: size)
            #expect(content.utf8.count == size)
            #expect(content == filler)
            try await eventually("the huge exchange") { try store.memories(session: "s-huge").count == 2 }
            let assistant = try #require(try store.memories(session: "s-huge").first { $0.role == "assistant" })
            #expect(assistant.content == String(decoding: filler.utf8.prefix(1 << 20), as: UTF8.self))
        }
    }

    @Test("a 20 MB non-streamed reply is relayed intact; storage stays bounded")
    func hugeCompletion() async throws {
        let store = try makeStore()
        let size = 20_000_000
        try await withProxy(memoryStore: store) { proxy in
            let (response, text) = try await proxy.chat(
                "Write me a very long essay", session: "s-huge-json", extraHeaders: [("X-Fake-Reply-Bytes", "\(size)")])
            #expect(response.status == 200)
            let choices = try #require(try jsonObject(text)["choices"] as? [[String: Any]])
            let content = try #require((choices.first?["message"] as? [String: Any])?["content"] as? String)
            #expect(content == FakeUpstream.filler(bytes: size))
            try await eventually("the huge exchange") { try !store.memories(session: "s-huge-json").isEmpty }
            _ = try await proxy.chat("sentinel", session: "s-huge-json")
            try await eventually("the sentinel") {
                try store.memories(session: "s-huge-json").contains { $0.content == "echo: sentinel" }
            }
            let memories = try store.memories(session: "s-huge-json")
            #expect(memories.contains { $0.role == "user" && $0.content == "Write me a very long essay" })
            #expect(memories.allSatisfy { $0.content.utf8.count <= 1 << 20 })
        }
    }
}

// MARK: - Loopback sockets for faults the fake upstream cannot produce

/// A TCP listener on 127.0.0.1 that either never accepts (connections wait in the kernel's backlog, requests are
/// never read or answered) or accepts each connection and closes it at once without a byte.
final class LoopbackListener: Sendable {
    let fd: Int32
    let port: Int

    init(accepting: Bool) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError(what: "socket") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            Glibc.close(fd)
            throw SocketError(what: "bind/listen")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
        if accepting {
            let thread = Thread {
                while true {
                    let client = accept(fd, nil, nil)
                    if client < 0 { return }  // the listener was shut down
                    Glibc.close(client)
                }
            }
            thread.start()
        }
    }

    func close() {
        shutdown(self.fd, Int32(SHUT_RDWR))
        Glibc.close(self.fd)
    }
}

struct SocketError: Error, CustomStringConvertible {
    let what: String
    var description: String { "\(self.what) failed: errno \(errno)" }
}

/// Sends `request` as raw bytes to 127.0.0.1:`port` and returns everything the server sends until it closes the
/// connection (or `timeoutSeconds` pass). Runs on its own thread: the calls block.
func rawExchange(port: Int, request: [UInt8], timeoutSeconds: Int = 20) async throws -> [UInt8] {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8], any Error>) in
        let thread = Thread {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return continuation.resume(throwing: SocketError(what: "socket")) }
            defer { Glibc.close(fd) }
            var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { return continuation.resume(throwing: SocketError(what: "connect")) }
            var offset = 0
            while offset < request.count {
                // The server may answer (413, 431) and close before reading everything: stop sending then.
                let sent = request[offset...].withUnsafeBytes {
                    send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if sent <= 0 { break }
                offset += sent
            }
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count <= 0 { break }
                received.append(contentsOf: buffer[0..<count])
            }
            continuation.resume(returning: received)
        }
        thread.start()
    }
}

/// Status code and (de-chunked) body of a raw HTTP/1.1 response; nil status when nothing came back.
func parseRawResponse(_ bytes: [UInt8]) -> (status: Int?, body: String) {
    let text = String(decoding: bytes, as: UTF8.self)
    guard let headEnd = text.range(of: "\r\n\r\n") else { return (nil, text) }
    let head = text[..<headEnd.lowerBound]
    let status = head.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) }
    var body = String(text[headEnd.upperBound...])
    if head.lowercased().contains("transfer-encoding: chunked") {
        var decoded = ""
        var rest = Substring(body)
        while let lineEnd = rest.range(of: "\r\n"), let size = Int(rest[..<lineEnd.lowerBound], radix: 16), size > 0 {
            let start = lineEnd.upperBound
            let end = rest.utf8.index(start, offsetBy: size, limitedBy: rest.utf8.endIndex) ?? rest.endIndex
            decoded += rest[start..<end]
            rest = rest[end...].dropFirst(2)
        }
        body = decoded
    }
    return (status, body)
}
