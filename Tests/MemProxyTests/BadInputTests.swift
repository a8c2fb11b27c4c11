import FakeUpstream
import Foundation
import MemProxy
import MemProxyStore
import MemProxyUpstream
import NIOCore
import Testing

// Hostile and broken client input (beyond MemoryTests.badInput): every case gets an OpenAI-shaped 4xx or, where
// the request is valid for the upstream, plain forwarding; never a crash, a hang, or a stored memory.

/// A chat completion body memproxy must refuse when a session is set.
struct BadBody: Sendable, CustomStringConvertible {
    var description: String
    var bytes: [UInt8]
    var code: String
    var param: String?
}

private func utf8(_ text: String) -> [UInt8] { Array(text.utf8) }

private let head = utf8(#"{"model":"m","messages":[{"role":"user","content":"a"#)
private let tail = utf8(#"b"}]}"#)

let badBodies: [BadBody] = [
    BadBody(description: "empty body", bytes: [], code: "invalid_json"),
    BadBody(description: "whitespace only", bytes: utf8(" \n\t "), code: "invalid_json"),
    BadBody(description: "truncated", bytes: utf8(#"{"model":"m","messages":["#), code: "invalid_json"),
    BadBody(description: "trailing garbage", bytes: utf8(#"{"model":"m","messages":[]} x"#), code: "invalid_json"),
    BadBody(description: "trailing comma", bytes: utf8(#"{"model":"m","messages":[],}"#), code: "invalid_json"),
    BadBody(description: "null", bytes: utf8("null"), code: "invalid_request_body"),
    BadBody(description: "a number", bytes: utf8("42"), code: "invalid_request_body"),
    BadBody(description: "a string", bytes: utf8(#""hello""#), code: "invalid_request_body"),
    BadBody(
        description: "messages null", bytes: utf8(#"{"model":"m","messages":null}"#), code: "invalid_messages",
        param: "messages"),
    BadBody(
        description: "messages an object", bytes: utf8(#"{"model":"m","messages":{"role":"user"}}"#),
        code: "invalid_messages", param: "messages"),
    BadBody(
        description: "message a number", bytes: utf8(#"{"model":"m","messages":[1]}"#), code: "invalid_messages",
        param: "messages[0]"),
    BadBody(
        description: "second message a string",
        bytes: utf8(#"{"model":"m","messages":[{"role":"user","content":"a"},"b"]}"#),
        code: "invalid_messages", param: "messages[1]"),
    BadBody(
        description: "role missing", bytes: utf8(#"{"model":"m","messages":[{"content":"x"}]}"#),
        code: "invalid_messages", param: "messages[0].role"),
    BadBody(
        description: "role null", bytes: utf8(#"{"model":"m","messages":[{"role":null,"content":"x"}]}"#),
        code: "invalid_messages", param: "messages[0].role"),
    BadBody(description: "raw NUL byte in a string", bytes: head + [0x00] + tail, code: "invalid_json"),
    BadBody(description: "invalid UTF-8 byte 0xFF", bytes: head + [0xFF] + tail, code: "invalid_json"),
    BadBody(description: "overlong UTF-8", bytes: head + [0xC0, 0xAF] + tail, code: "invalid_json"),
    BadBody(description: "UTF-8 encoded surrogate", bytes: head + [0xED, 0xA0, 0x80] + tail, code: "invalid_json"),
    BadBody(description: "truncated UTF-8 sequence", bytes: head + [0xE2, 0x82] + tail, code: "invalid_json"),
    BadBody(description: "lone surrogate escape", bytes: head + utf8(#"\ud800"#) + tail, code: "invalid_json"),
    BadBody(
        description: "100k nested arrays",
        bytes: utf8(#"{"model":"m","messages":[],"x":"#) + [UInt8](repeating: 0x5B, count: 100_000)
            + [UInt8](repeating: 0x5D, count: 100_000) + utf8("}"),
        code: "invalid_json"),
    BadBody(
        description: "100k nested objects",
        bytes: Array(String(repeating: #"{"a":"#, count: 100_000).utf8) + utf8("1")
            + [UInt8](repeating: 0x7D, count: 100_000),
        code: "invalid_json"),
]

extension ProxyHarness {
    /// POSTs raw bytes to /v1/chat/completions.
    func postChat(
        _ body: [UInt8],
        session: String?,
        headers: [(name: String, value: String)] = []
    ) async throws -> (response: UpstreamResponse, body: String) {
        var all: [(name: String, value: String)] = [("Content-Type", "application/json")] + headers
        if let session { all.append(("X-Session-Id", session)) }
        let response = try await self.client.execute(
            UpstreamRequest(
                method: "POST",
                url: "http://127.0.0.1:\(self.proxyPort)/v1/chat/completions",
                headers: all,
                body: ByteBuffer(bytes: body)
            ),
            timeouts: UpstreamTimeouts(connectSeconds: 5, totalSeconds: 60)
        )
        let bytes = try await response.collect(upTo: 64 * 1024 * 1024)
        return (response, String(buffer: bytes))
    }

    /// The messages the fake upstream received in its newest chat completion.
    func lastUpstreamMessages() throws -> [[String: Any]] {
        try #require(try jsonObject(self.lastUpstreamBody)["messages"] as? [[String: Any]])
    }
}

func chatBytes(_ messages: [[String: String]]) throws -> [UInt8] {
    Array(
        try JSONSerialization.data(
            withJSONObject: ["model": "fake-model", "messages": messages], options: [.sortedKeys]))
}

@Suite("Bad input", .timeLimit(.minutes(2)))
struct BadInputTests {
    @Test("broken and hostile bodies with a session get an OpenAI-shaped 400; nothing forwarded or stored")
    func badBodiesRejected() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            for bad in badBodies {
                let (response, text) = try await proxy.postChat(bad.bytes, session: "s-bad")
                #expect(response.status == 400, "\(bad)")
                #expect(response.header("Content-Type") == "application/json", "\(bad)")
                let error = try #require(try jsonObject(text)["error"] as? [String: Any], "\(bad)")
                #expect(error["type"] as? String == "invalid_request_error", "\(bad)")
                #expect(error["code"] as? String == bad.code, "\(bad)")
                #expect(error["param"] as? String == bad.param, "\(bad)")
                #expect((error["message"] as? String)?.isEmpty == false, "\(bad)")
            }
            let deep = try await proxy.postChat(badBodies.last!.bytes, session: "s-bad")
            #expect(deep.body.contains("nesting deeper than 128 levels"))
            #expect(proxy.fake.requests.isEmpty)
            let (health, _) = try await proxy.fetch("GET", "/healthz")
            #expect(health.status == 200)
            await store.flush()
            #expect(try store.memories(session: "s-bad").isEmpty)
        }
    }

    @Test("without a session the same bodies are forwarded byte for byte (memproxy does not judge them)")
    func badBodiesForwardedWithoutSession() async throws {
        try await withProxy { proxy in
            for bad in badBodies where !bad.bytes.isEmpty {
                let (response, _) = try await proxy.postChat(bad.bytes, session: nil)
                #expect(response.status == 200, "\(bad)")
                #expect(response.header("X-Memory-Session") == nil, "\(bad)")
                #expect(proxy.fake.requests.last?.body == bad.bytes, "\(bad)")
            }
        }
    }

    @Test("escaped NUL and control characters survive injection, forwarding and storage")
    func nulAndControlCharacters() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let text = "zebra before\u{0}after \u{1F}unit\u{7F} tab\there \u{2028} end"
            let (first, _) = try await proxy.postChat(
                try chatBytes([["role": "user", "content": text]]), session: "s-nul")
            #expect(first.status == 200)
            try await eventually("the exchange") { try store.memories(session: "s-nul").count == 2 }
            let stored = try store.memories(session: "s-nul").first { $0.role == "user" }?.content
            // SQLite text cannot hold NUL as GRDB binds it: it is kept as U+FFFD rather than cutting the text.
            #expect(stored == text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}"))

            // The next request gets the memory injected, so memproxy re-serializes the body: still exact.
            let question = "what about the zebra?\u{0}"
            let (second, _) = try await proxy.postChat(
                try chatBytes([["role": "user", "content": question]]), session: "s-nul")
            #expect(second.status == 200)
            #expect(Int(second.header("X-Memory-Injected") ?? "") ?? 0 >= 1)
            let messages = try proxy.lastUpstreamMessages()
            #expect(messages.count == 2)
            #expect(messages.last?["content"] as? String == question)
            #expect((messages.first?["content"] as? String)?.contains("zebra before") == true)
        }
    }

    @Test("a 1 MB message is forwarded intact and stored; recalling it stays within the token budget")
    func oneMegabyteMessage() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            var text = "orchid "
            while text.utf8.count < 1_000_000 { text += "lorem ipsum dolor sit amet \(text.utf8.count) " }
            let body = try chatBytes([["role": "user", "content": text]])
            let (response, reply) = try await proxy.postChat(body, session: "s-1mb")
            #expect(response.status == 200)
            #expect(proxy.fake.requests.last?.body == body)
            #expect(reply.contains("echo: orchid lorem"))
            try await eventually("the 1 MB exchange") { try store.memories(session: "s-1mb").count == 2 }
            #expect(try store.memories(session: "s-1mb").first { $0.role == "user" }?.content == text)

            let (second, _) = try await proxy.postChat(
                try chatBytes([["role": "user", "content": "tell me about the orchid"]]), session: "s-1mb")
            #expect(second.status == 200)
            #expect(Int(second.header("X-Memory-Tokens") ?? "") ?? .max <= 1000)
            #expect(proxy.lastUpstreamBody.utf8.count < 10_000)
        }
    }

    @Test("10,000 messages are forwarded intact; only the newest user message is stored")
    func tenThousandMessages() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            func conversation(ending last: String) -> [[String: String]] {
                var messages: [[String: String]] = []
                for index in 0..<9_999 {
                    messages.append(["role": index % 2 == 0 ? "user" : "assistant", "content": "turn \(index) kiwi"])
                }
                messages.append(["role": "user", "content": last])
                return messages
            }
            let body = try chatBytes(conversation(ending: "the newest kiwi question"))
            let (response, _) = try await proxy.postChat(body, session: "s-10k")
            #expect(response.status == 200)
            #expect(proxy.fake.requests.last?.body == body)
            try await eventually("the exchange") { try store.memories(session: "s-10k").count == 2 }
            #expect(
                Set(try store.memories(session: "s-10k").map(\.content))
                    == ["the newest kiwi question", "echo: the newest kiwi question"])

            let (second, _) = try await proxy.postChat(
                try chatBytes(conversation(ending: "another kiwi")), session: "s-10k")
            #expect(second.status == 200)
            let messages = try proxy.lastUpstreamMessages()
            #expect(messages.count == 10_001)
            #expect(messages.first?["role"] as? String == "system")
            #expect(messages[1]["content"] as? String == "turn 0 kiwi")
            #expect(messages.last?["content"] as? String == "another kiwi")
        }
    }

    @Test("more invalid session ids: C1 controls, bytes that are not UTF-8, 64 KB, DEL; blank means none; emoji fine")
    func sessionIDs() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            for session in ["abc\u{85}def", String(repeating: "s", count: 65_536)] {
                let (response, text) = try await proxy.chat("hello", session: session)
                #expect(response.status == 400, "\(session.prefix(20))")
                let error = try #require(try jsonObject(text)["error"] as? [String: Any])
                #expect(error["code"] as? String == "invalid_session_id")
            }
            // Not UTF-8: would otherwise be decoded to the same "abc\u{FFFD}def" and share one session.
            for byte: UInt8 in [0xFE, 0xFF] {
                let body = #"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#
                let request =
                    utf8("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Session-Id: abc") + [byte]
                    + utf8("def\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
                let (status, text) = parseRawResponse(try await rawExchange(port: proxy.proxyPort, request: request))
                #expect(status == 400)
                let error = try #require(try jsonObject(text)["error"] as? [String: Any])
                #expect(error["code"] as? String == "invalid_session_id")
            }
            // DEL is refused by the HTTP parser itself (a bare 400 without a body), before memproxy sees it.
            let (del, _) = try await proxy.chat("hello", session: "del\u{7F}")
            #expect(del.status == 400)
            #expect(proxy.fake.requests.isEmpty)

            let (blank, _) = try await proxy.chat("hello", session: "   ")
            #expect(blank.status == 200)
            #expect(blank.header("X-Memory-Session") == nil)

            let emoji = String(repeating: "👍🏽", count: 200)
            let (ok, _) = try await proxy.chat("thumbs", session: emoji)
            #expect(ok.status == 200)
            try await eventually("the emoji session's exchange") { try store.memories(session: emoji).count == 2 }
        }
    }

    @Test("FTS5 syntax in user text is stored verbatim and never breaks recall")
    func hostileFTSSyntax() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let hostile = #"walrus" OR "x" NEAR(a b, 1) AND NOT content:* ^start -minus (unbalanced {col} 'q' \ "#
            let (first, _) = try await proxy.chat(hostile, session: "s-fts")
            #expect(first.status == 200)
            try await eventually("the exchange") { try store.memories(session: "s-fts").count == 2 }
            #expect(try store.memories(session: "s-fts").first { $0.role == "user" }?.content == hostile)

            for query in [#"tell me about "walrus* AND (NEAR"#, #"" * ( ) : ^ - { } AND OR NOT NEAR"#, "\"", "*"] {
                let (response, text) = try await proxy.chat(query, session: "s-fts")
                #expect(response.status == 200, "\(query)")
                #expect(response.header("X-Memory-Error") == nil, "recall failed for \(query)")
                #expect(text.contains("echo: "), "\(query)")
                if query.contains("walrus") {
                    #expect(Int(response.header("X-Memory-Injected") ?? "") ?? 0 >= 1)
                }
            }
        }
    }

    @Test("a chunked body over max_body_bytes gets 413 request_too_large; nothing forwarded or stored")
    func chunkedBodyTooLarge() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store, configure: { config, _ in config.server.maxBodyBytes = 1024 }) {
            proxy in
            var request = utf8(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Session-Id: s-413\r\n"
                    + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            let content = String(repeating: "x", count: 900)
            let body =
                #"{"model":"m","messages":[{"role":"user","content":"\#(content)"},{"role":"user","content":"\#(content)"}]}"#
            for piece in stride(from: 0, to: body.utf8.count, by: 300) {
                let slice = Array(body.utf8)[piece..<min(piece + 300, body.utf8.count)]
                request += utf8(String(slice.count, radix: 16) + "\r\n") + slice + utf8("\r\n")
            }
            request += utf8("0\r\n\r\n")
            let (status, text) = parseRawResponse(try await rawExchange(port: proxy.proxyPort, request: request))
            #expect(status == 413)
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["type"] as? String == "invalid_request_error")
            #expect(error["code"] as? String == "request_too_large")
            #expect(proxy.fake.requests.isEmpty)
            await store.flush()
            #expect(try store.memories(session: "s-413").isEmpty)
        }
    }

    @Test("oversized request headers are refused without a crash, and the server keeps serving")
    func oversizedHeaders() async throws {
        try await withProxy { proxy in
            let body = #"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#
            let huge = "X-Huge: " + String(repeating: "h", count: 200_000) + "\r\n"
            let many = (0..<10_000).map { "X-Many-\($0): v\r\n" }.joined()
            for (name, extra) in [("one 200 KB header", huge), ("10,000 headers", many)] {
                let request = utf8(
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Session-Id: s-hdr\r\n"
                        + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
                        + extra + "\r\n" + body)
                let (status, _) = parseRawResponse(try await rawExchange(port: proxy.proxyPort, request: request))
                // The HTTP parser answers a bare 400 (not OpenAI-shaped: memproxy never sees the request).
                let code = try #require(status, "\(name): no answer")
                #expect((400..<500).contains(code), "\(name): \(code)")
            }
            #expect(proxy.fake.requests.isEmpty)
            let (health, _) = try await proxy.fetch("GET", "/healthz")
            #expect(health.status == 200)
        }
    }
}
