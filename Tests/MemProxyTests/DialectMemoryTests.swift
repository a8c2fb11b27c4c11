import FakeUpstream
import Foundation
import MemProxy
import MemProxyCore
import MemProxyStore
import MemProxyUpstream
import Testing

/// The three APIs memory serves, as a test drives them against the fake upstream.
enum TestAPI: String, CaseIterable, CustomStringConvertible {
    case chat = "/v1/chat/completions"
    case responses = "/v1/responses"
    case messages = "/v1/messages"

    var description: String { rawValue }

    /// A request whose newest user message is `text` (after `history`), optionally with one function tool.
    func body(_ text: String, stream: Bool = false, tools: Bool = false, extra: [String: Any] = [:]) -> String {
        var object: [String: Any] = ["model": "fake-model", "stream": stream]
        switch self {
        case .chat:
            object["messages"] = [["role": "user", "content": text]]
            if tools {
                object["tools"] = [
                    ["type": "function", "function": ["name": "lookup", "parameters": ["type": "object"]]]
                ]
            }
        case .responses:
            object["input"] = [["role": "user", "content": [["type": "input_text", "text": text]]]]
            if tools { object["tools"] = [["type": "function", "name": "lookup", "parameters": ["type": "object"]]] }
        case .messages:
            object["max_tokens"] = 256
            object["messages"] = [["role": "user", "content": text]]
            if tools { object["tools"] = [["name": "lookup", "input_schema": ["type": "object"]]] }
        }
        for (key, value) in extra { object[key] = value }
        return Self.json(object)
    }

    static func json(_ object: Any) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    /// Where the memory block is with the default placement, in the body the upstream received.
    func injectedText(in upstreamBody: String) throws -> String {
        let object = try jsonObject(upstreamBody)
        switch self {
        case .chat:
            let messages = try #require(object["messages"] as? [[String: Any]])
            return messages.first?["role"] as? String == "system" ? messages.first?["content"] as? String ?? "" : ""
        case .responses:
            return object["instructions"] as? String ?? ""
        case .messages:
            return object["system"] as? String ?? ""
        }
    }
}

extension ProxyHarness {
    func call(
        _ api: TestAPI,
        _ body: String,
        session: String,
        headers: [(name: String, value: String)] = []
    ) async throws -> (response: UpstreamResponse, body: String) {
        try await self.fetch(
            "POST", api.rawValue,
            headers: [("Content-Type", "application/json"), ("X-Session-Id", session)] + headers,
            body: body)
    }

    /// The body the fake upstream received for the newest request to `api`.
    func lastBody(_ api: TestAPI) -> String {
        String(decoding: self.fake.requests.last { $0.target == api.rawValue }?.body ?? [], as: UTF8.self)
    }
}

/// Waits until the session holds `count` memories, then until everything submitted so far is committed.
func memories(of session: String, count: Int, in store: SQLiteMemoryStore) async throws -> [Memory] {
    try await eventually("\(count) memories in \(session)") { try store.memories(session: session).count >= count }
    await store.flush()
    return try store.memories(session: session)
}

@Suite("Memory on every API", .timeLimit(.minutes(2)))
struct DialectMemoryTests {
    @Test(
        "a fact told through one API is injected on the next request of the same session through each API",
        arguments: TestAPI.allCases)
    func factAcrossAPIs(told: TestAPI) async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let session = "across-\(told)"
            let (first, _) = try await proxy.call(
                told, told.body("My sister Alice lives in Reykjavik and keeps bees."), session: session)
            #expect(first.status == 200)
            #expect(first.header("X-Memory-Session") == session)
            _ = try await memories(of: session, count: 2, in: store)
            for asked in TestAPI.allCases {
                let (response, _) = try await proxy.call(
                    asked, asked.body("Where does my sister Alice live?"), session: session)
                #expect(response.status == 200, "\(asked)")
                #expect(Int(response.header("X-Memory-Injected") ?? "") ?? 0 >= 1, "\(asked)")
                let block = try asked.injectedText(in: proxy.lastBody(asked))
                #expect(block.contains("<memory>") && block.contains("Reykjavik"), "\(asked): \(block)")
                // Another session sees nothing.
                let (other, _) = try await proxy.call(
                    asked, asked.body("Where does my sister Alice live?"), session: "x-\(asked)-" + session)
                #expect(other.header("X-Memory-Injected") == "0")
                #expect(!proxy.lastBody(asked).contains("Reykjavik"))
            }
            await store.flush()
            let apis = try store.injections(session: session, limit: 10).map(\.api)
            #expect(apis.sorted() == ["chat.completions", "messages", "responses"])
        }
    }

    @Test(
        "a 3-round tool loop stores one user memory, and one assistant memory per round", arguments: TestAPI.allCases,
        [false, true])
    func toolLoop(api: TestAPI, stream: Bool) async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let session = "loop-\(api)-\(stream)"
            let question = "Which flights leave Oslo for Tromso tomorrow morning?"
            var rounds: [[String: Any]] = []
            func request(_ extraItems: [[String: Any]]) -> String {
                var object = try! jsonObject(api.body(question, stream: stream, tools: true))
                let key = api == .responses ? "input" : "messages"
                object[key] = (object[key] as! [[String: Any]]) + extraItems
                return TestAPI.json(object)
            }
            // Round 1: the user's question; the model calls the tool.
            let (first, _) = try await proxy.call(api, request([]), session: session)
            #expect(first.status == 200)
            // Rounds 2 and 3: tool results after the same user message (the client resends the history).
            for round in 1...2 {
                switch api {
                case .chat:
                    rounds += [
                        [
                            "role": "assistant", "content": NSNull(),
                            "tool_calls": [
                                [
                                    "id": "call_\(round)", "type": "function",
                                    "function": ["name": "lookup", "arguments": "{}"],
                                ]
                            ],
                        ],
                        ["role": "tool", "tool_call_id": "call_\(round)", "content": "result \(round)"],
                    ]
                case .responses:
                    rounds += [
                        ["type": "function_call", "call_id": "call_\(round)", "name": "lookup", "arguments": "{}"],
                        ["type": "function_call_output", "call_id": "call_\(round)", "output": "result \(round)"],
                    ]
                case .messages:
                    rounds += [
                        [
                            "role": "assistant",
                            "content": [
                                [
                                    "type": "tool_use", "id": "toolu_\(round)", "name": "lookup",
                                    "input": [String: String](),
                                ]
                            ],
                        ],
                        [
                            "role": "user",
                            "content": [
                                ["type": "tool_result", "tool_use_id": "toolu_\(round)", "content": "result \(round)"]
                            ],
                        ],
                    ]
                }
                let (response, _) = try await proxy.call(api, request(rounds), session: session)
                #expect(response.status == 200)
            }
            let stored = try await memories(of: session, count: 4, in: store)
            #expect(stored.filter { $0.role == "user" }.map(\.content) == [question])
            #expect(
                stored.filter { $0.role == "assistant" }.map(\.content) == [
                    #"tool_call lookup({"query":"Which flights leave Oslo for Tromso tomorrow morning?"})"#,
                    "tool result: result 1", "tool result: result 2",
                ])
            #expect(stored.allSatisfy { !$0.isIncompleteReply })
        }
    }

    @Test(
        "a reply cut off mid-stream is stored marked incomplete, never injected, and a retry completes it in place",
        arguments: TestAPI.allCases)
    func cutStream(api: TestAPI) async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let session = "cut-\(api)"
            let text = "Tell me everything about the zebras of Kenya and their stripes"
            let body = api.body(text, stream: true)
            // Cut after the first text deltas (the APIs open their streams with 1, 4 and 3 other events).
            let dropAfter = ["\(TestAPI.chat)": "4", "\(TestAPI.responses)": "6", "\(TestAPI.messages)": "5"]["\(api)"]!
            let (cut, streamed) = try await proxy.call(
                api, body, session: session, headers: [("X-Fake-Drop-After", dropAfter)])
            #expect(cut.status == 200)
            // memproxy tells the client in the API's own shape that the stream broke off.
            switch api {
            case .chat:
                #expect(streamed.hasSuffix("\"code\":\"upstream_disconnected\"}}\n\n"))
            case .responses:
                #expect(streamed.contains("event: error\ndata: {\"type\":\"error\",\"code\":\"upstream_disconnected\""))
            case .messages:
                #expect(streamed.contains("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""))
            }
            let partial = try await memories(of: session, count: 2, in: store)
            let reply = try #require(partial.first { $0.role == "assistant" })
            #expect(reply.isIncompleteReply)
            #expect(reply.content.hasPrefix("echo:") && reply.content.count < ("echo: " + text).count)

            // The partial reply is never injected, however well it matches.
            let (next, _) = try await proxy.call(
                api, api.body("echo: tell me everything about zebras of Kenya"), session: session)
            #expect(next.status == 200)
            await store.flush()
            let injected = try store.injections(session: session, limit: 5).flatMap(\.memoryIDs)
            #expect(!injected.isEmpty)
            #expect(!injected.contains(reply.id))

            // The client's retry of the same request completes the exchange: the user message is not stored twice.
            let (retry, _) = try await proxy.call(api, body, session: session)
            #expect(retry.status == 200)
            try await eventually("the retry to complete the reply") {
                try store.memories(session: session).contains { $0.id == reply.id && !$0.isIncompleteReply }
            }
            await store.flush()
            let after = try store.memories(session: session)
            #expect(after.filter { $0.content == text }.count == 1)
            #expect(after.first { $0.id == reply.id }?.content == "echo: " + text)
        }
    }

    @Test(
        "an upstream's own failure events make the reply incomplete",
        arguments: [
            (TestAPI.responses, "failed"), (.responses, "incomplete"), (.messages, "error"),
        ])
    func failureEvents(api: TestAPI, final: String) async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let session = "fail-\(api)-\(final)"
            for stream in [false, true] where !(api == .messages && !stream) {
                let (response, _) = try await proxy.call(
                    api, api.body("Summarise the history of Lisbon \(stream)", stream: stream), session: session,
                    headers: [("X-Fake-Final", final)])
                #expect(response.status == 200)
            }
            let expected = api == .messages ? 2 : 4
            let stored = try await memories(of: session, count: expected, in: store)
            #expect(stored.filter { $0.role == "assistant" }.allSatisfy { $0.isIncompleteReply })
            #expect(stored.filter { $0.role == "assistant" }.count == expected / 2)
        }
    }

    @Test(
        "Anthropic with cache_control: system and tools stay byte-identical, the block is the last text block of the last user message"
    )
    func anthropicCacheControl() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let session = "cache"
            _ = try await proxy.call(
                .messages, TestAPI.messages.body("My favourite tea is Darjeeling from Glenburn."), session: session)
            _ = try await memories(of: session, count: 2, in: store)
            let system = #"[{"type":"text","text":"You are a tea sommelier.","cache_control":{"type":"ephemeral"}}]"#
            let tools = #"[{"name":"lookup","description":"Looks tea up","input_schema":{"type":"object"}}]"#
            let body =
                #"{"model":"fake-model","max_tokens":64,"system":\#(system),"tools":\#(tools),"messages":[{"role":"user","content":"Which tea do I like best?"}]}"#
            let (response, _) = try await proxy.call(.messages, body, session: session)
            #expect(response.status == 200)
            #expect(Int(response.header("X-Memory-Injected") ?? "") ?? 0 >= 1)
            let upstream = proxy.lastBody(.messages)
            #expect(upstream.contains(#""system":\#(system)"#))
            #expect(upstream.contains(#""tools":\#(tools)"#))
            let messages = try #require(try jsonObject(upstream)["messages"] as? [[String: Any]])
            let content = try #require(messages.last?["content"] as? [[String: Any]])
            #expect(content.first?["text"] as? String == "Which tea do I like best?")
            #expect(content.count == 2)
            #expect((content.last?["text"] as? String)?.contains("Darjeeling") == true)
            #expect(content.last?["cache_control"] == nil)
        }
    }

    @Test(
        "stateful Responses: the block goes into instructions, and a previous_response_id continuation gets the same block"
    )
    func statefulResponses() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store, configure: { config, _ in config.memory.placement = .lastUser }) {
            proxy in
            let session = "stateful"
            _ = try await proxy.call(
                .responses, #"{"model":"m","input":"My passport number is X1234 and expires in May."}"#,
                session: session)
            _ = try await memories(of: session, count: 2, in: store)
            let ask =
                #"{"model":"m","previous_response_id":"resp_earlier","input":"When does my passport expire?","tools":[{"type":"function","name":"lookup","parameters":{"type":"object"}}]}"#
            let (first, text) = try await proxy.call(.responses, ask, session: session)
            #expect(first.status == 200)
            let firstUpstream = try jsonObject(proxy.lastBody(.responses))
            // Stateful: instructions, even with memory.placement = last_user; the input is untouched.
            let instructions = try #require(firstUpstream["instructions"] as? String)
            #expect(instructions.contains("X1234"))
            #expect(firstUpstream["input"] as? String == "When does my passport expire?")
            let responseID = try #require(try jsonObject(text)["id"] as? String)

            let continuation =
                #"{"model":"m","previous_response_id":"\#(responseID)","input":[{"type":"function_call_output","call_id":"call_1","output":"May 2031"}]}"#
            let (second, _) = try await proxy.call(.responses, continuation, session: session)
            #expect(second.status == 200)
            #expect(second.header("X-Memory-Injected") == first.header("X-Memory-Injected"))
            #expect(try jsonObject(proxy.lastBody(.responses))["instructions"] as? String == instructions)

            // Another session cannot borrow that response's memories by naming its id.
            let (other, _) = try await proxy.call(.responses, continuation, session: "intruder")
            #expect(other.header("X-Memory-Injected") == "0")
            #expect(!proxy.lastBody(.responses).contains("X1234"))

            let stored = try await memories(of: session, count: 5, in: store)
            #expect(stored.filter { $0.role == "user" }.count == 2)
            #expect(stored.last?.content == "tool result: May 2031")
            let records = try store.injections(session: session, limit: 5)
            #expect(records.first { $0.responseID == responseID }?.block == instructions)
        }
    }

    @Test("a continuation after a restart finds the earlier response's block in the injection log")
    func continuationAfterRestart() async throws {
        let database = FileManager.default.temporaryDirectory.appendingPathComponent(
            "memproxy-test-\(UUID().uuidString).db"
        ).path
        var responseID = ""
        var instructions = ""
        try await withProxy(configure: { config, _ in config.memory.database = database }) { proxy in
            _ = try await proxy.call(
                .responses, #"{"model":"m","input":"The garage door code is 8812."}"#, session: "restart")
            let ask =
                #"{"model":"m","input":"What is the garage door code?","tools":[{"type":"function","name":"lookup","parameters":{"type":"object"}}]}"#
            try await eventually("the fact to be recallable") {
                let (response, text) = try await proxy.call(
                    .responses, ask, session: "restart", headers: [("X-Memory-Mode", "read")])
                responseID = try jsonObject(text)["id"] as? String ?? ""
                return response.header("X-Memory-Injected") != "0"
            }
            instructions = try #require(try jsonObject(proxy.lastBody(.responses))["instructions"] as? String)
        }
        try await withProxy(configure: { config, _ in config.memory.database = database }) { proxy in
            let continuation =
                #"{"model":"m","previous_response_id":"\#(responseID)","input":[{"type":"function_call_output","call_id":"c","output":"8812"}]}"#
            let (response, _) = try await proxy.call(.responses, continuation, session: "restart")
            #expect(response.status == 200)
            #expect(try jsonObject(proxy.lastBody(.responses))["instructions"] as? String == instructions)
        }
    }

    @Test(
        "memory.placement = last_user leaves every earlier byte as sent and appends the block to the newest user message"
    )
    func lastUserPlacement() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store, configure: { config, _ in config.memory.placement = .lastUser }) {
            proxy in
            let session = "last-user"
            _ = try await proxy.call(.chat, TestAPI.chat.body("Our wifi password is cormorant-42."), session: session)
            _ = try await memories(of: session, count: 2, in: store)
            let prefix =
                #"{"model":"fake-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"#
            let (chat, _) = try await proxy.call(.chat, prefix + #""What is our wifi password?"}]}"#, session: session)
            #expect(Int(chat.header("X-Memory-Injected") ?? "") ?? 0 >= 1)
            let upstream = proxy.lastBody(.chat)
            #expect(upstream.hasPrefix(prefix + #""What is our wifi password?\n\n<memory>"#))

            let (responses, _) = try await proxy.call(
                .responses, #"{"model":"m","instructions":"Be terse.","input":"What is our wifi password?"}"#,
                session: session)
            #expect(Int(responses.header("X-Memory-Injected") ?? "") ?? 0 >= 1)
            let object = try jsonObject(proxy.lastBody(.responses))
            #expect(object["instructions"] as? String == "Be terse.")
            #expect((object["input"] as? String)?.hasPrefix("What is our wifi password?\n\n<memory>") == true)

            let (messages, _) = try await proxy.call(
                .messages, TestAPI.messages.body("What is our wifi password?", extra: ["system": "Be terse."]),
                session: session)
            #expect(Int(messages.header("X-Memory-Injected") ?? "") ?? 0 >= 1)
            let anthropic = try jsonObject(proxy.lastBody(.messages))
            #expect(anthropic["system"] as? String == "Be terse.")
            let content = try #require(
                (anthropic["messages"] as? [[String: Any]])?.last?["content"] as? [[String: Any]])
            #expect(content.map { $0["type"] as? String } == ["text", "text"])
            #expect((content.last?["text"] as? String)?.contains("cormorant-42") == true)
        }
    }

    @Test("errors memproxy makes on /v1/messages use Anthropic's shape; on /v1/responses OpenAI's")
    func errorShapes() async throws {
        try await withProxy(configure: { config, _ in config.upstream.anthropicURL = "http://127.0.0.1:9" }) { proxy in
            let (bad, badText) = try await proxy.call(.messages, "{not json", session: "errors")
            #expect(bad.status == 400)
            let error = try jsonObject(badText)
            #expect(error["type"] as? String == "error")
            #expect((error["error"] as? [String: Any])?["type"] as? String == "invalid_request_error")
            #expect(((error["error"] as? [String: Any])?["message"] as? String)?.isEmpty == false)

            let (badSession, sessionText) = try await proxy.call(
                .messages, TestAPI.messages.body("hi"), session: String(repeating: "s", count: 201))
            #expect(badSession.status == 400)
            #expect(
                (try jsonObject(sessionText)["error"] as? [String: Any])?["type"] as? String == "invalid_request_error")

            // upstream.anthropic_url points at a closed port: 502 in Anthropic's shape; OpenAI routes still work.
            let (unreachable, unreachableText) = try await proxy.call(
                .messages, TestAPI.messages.body("hi"), session: "errors")
            #expect(unreachable.status == 502)
            #expect((try jsonObject(unreachableText)["error"] as? [String: Any])?["type"] as? String == "api_error")
            let (chat, _) = try await proxy.call(.chat, TestAPI.chat.body("hi"), session: "errors")
            #expect(chat.status == 200)

            let (responses, responsesText) = try await proxy.call(
                .responses, #"{"model":"m","input":7}"#, session: "errors")
            #expect(responses.status == 400)
            let openAI = try #require(try jsonObject(responsesText)["error"] as? [String: Any])
            #expect(openAI["param"] as? String == "input")
            #expect(openAI["code"] as? String == "invalid_request_body")
        }
    }

    @Test(
        "Anthropic requests go to upstream.anthropic_url with upstream.anthropic_api_key; the OpenAI key never goes there"
    )
    func anthropicUpstream() async throws {
        try await withProxy(configure: { config, fakePort in
            config.upstream.url = "http://127.0.0.1:9"
            config.upstream.anthropicURL = "http://127.0.0.1:\(fakePort)/"
            config.upstream.apiKey = "sk-openai-secret"
            config.upstream.anthropicAPIKey = "sk-ant-secret"
        }) { proxy in
            let (response, _) = try await proxy.fetch(
                "POST", "/v1/messages",
                headers: [
                    ("Content-Type", "application/json"), ("x-api-key", "client-key"),
                    ("anthropic-version", "2023-06-01"),
                    ("Authorization", "Bearer client-key"),
                    ("anthropic-beta", "prompt-caching-2024-07-31"),
                ],
                body: TestAPI.messages.body("hello"))
            #expect(response.status == 200)
            let recorded = try #require(proxy.fake.requests.last)
            #expect(recorded.target == "/v1/messages")
            #expect(recorded.headers.filter { $0.name.lowercased() == "x-api-key" }.map(\.value) == ["sk-ant-secret"])
            #expect(recorded.header("authorization") == nil)
            #expect(recorded.header("anthropic-version") == "2023-06-01")
            #expect(recorded.header("anthropic-beta") == "prompt-caching-2024-07-31")
            let (chat, _) = try await proxy.call(.chat, TestAPI.chat.body("hi"), session: "u")
            #expect(chat.status == 502)
        }
    }
}
