import Testing

@testable import MemProxyCore

private func messages(_ body: String) throws -> MessagesRequest {
    try MessagesRequest(body: bytes(body))
}

private func request(_ messageList: String) throws -> MessagesRequest {
    try messages(#"{"model":"claude-opus-4-6","max_tokens":1024,"messages":"# + messageList + "}")
}

/// A tool loop's first round trip: the user's question, the assistant's `tool_use`, the `tool_result` (which holds
/// text of its own, which is not the user's).
private let toolLoop =
    #"[{"role":"user","content":"What's the weather in San Francisco?"},{"role":"assistant","content":[{"type":"#
    + #""text","text":"Let me check."},{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"#
    + #""location":"San Francisco, CA"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"#
    + #""toolu_01","content":[{"type":"text","text":"65°F, sunny"}]}]}]"#

// MARK: - Newest user text and turn kind

@Suite struct MessagesRequestTurnTests {
    @Test func stringContentIsTheNewUserTurn() throws {
        let anthropic = try request(#"[{"role":"user","content":"Hello, Claude — ça va? 🙂"}]"#)
        #expect(anthropic.model == "claude-opus-4-6")
        #expect(anthropic.newestUserText == "Hello, Claude — ça va? 🙂")
        #expect(anthropic.isNewUserTurn)
        #expect(!anthropic.isContinuation)
        #expect(anthropic.continuedResponseID == nil)
    }

    @Test func textBlocksAreJoinedAndOtherBlocksIgnored() throws {
        let anthropic = try request(
            #"[{"role":"user","content":"old"},{"role":"assistant","content":"ok"},{"role":"user","content":[{"#
                + #""type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBOR"}},{"type":"#
                + #""text","text":"What is this?"},{"type":"document","source":{"type":"text","media_type":"#
                + #""text/plain","data":"doc"}},{"type":"text","text":"Be brief.","cache_control":{"type":"#
                + #""ephemeral"}}]}]"#)
        #expect(anthropic.newestUserText == "What is this?\nBe brief.")
        #expect(anthropic.isNewUserTurn)
    }

    @Test func toolResultOnlyMessageIsSkippedAndIsContinuation() throws {
        let anthropic = try request(toolLoop)
        #expect(anthropic.newestUserText == "What's the weather in San Francisco?")
        #expect(!anthropic.isNewUserTurn)
        #expect(anthropic.isContinuation)
        #expect(anthropic.continuedResponseID == nil)
    }

    @Test func secondToolRoundTripStillRecallsWithTheQuestion() throws {
        let anthropic = try request(
            #"[{"role":"user","content":[{"type":"text","text":"Plan my trip"}]},{"role":"assistant","content":[{"#
                + #""type":"tool_use","id":"t1","name":"a","input":{}}]},{"role":"user","content":[{"type":"#
                + #""tool_result","tool_use_id":"t1","content":"r1"}]},{"role":"assistant","content":[{"type":"#
                + #""tool_use","id":"t2","name":"b","input":{}}]},{"role":"user","content":[{"type":"tool_result","#
                + #""tool_use_id":"t2","content":"r2","is_error":true}]}]"#)
        #expect(anthropic.newestUserText == "Plan my trip")
        #expect(!anthropic.isNewUserTurn)
        #expect(anthropic.isContinuation)
    }

    @Test func toolResultWithUserTextIsNewTurn() throws {
        let anthropic = try request(
            #"[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","#
                + #""name":"a","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","#
                + #""content":"r"},{"type":"text","text":"Also, I moved to Lyon."}]}]"#)
        #expect(anthropic.newestUserText == "Also, I moved to Lyon.")
        #expect(anthropic.isNewUserTurn)
        #expect(!anthropic.isContinuation)
    }

    @Test func assistantPrefillAfterUserIsStillNewTurn() throws {
        let anthropic = try request(#"[{"role":"user","content":"Give JSON"},{"role":"assistant","content":"{"}]"#)
        #expect(anthropic.newestUserText == "Give JSON")
        #expect(anthropic.isNewUserTurn)
        #expect(!anthropic.isContinuation)
    }

    /// Only `tool_result` messages are looked past: an image-only message ends the search.
    @Test func imageOnlyLastUserMessageHasNoText() throws {
        let anthropic = try request(
            #"[{"role":"user","content":"old"},{"role":"assistant","content":"ok"},{"role":"user","content":[{"#
                + #""type":"image","source":{"type":"url","url":"https://x/a.png"}}]}]"#)
        #expect(anthropic.newestUserText == nil)
        #expect(!anthropic.isNewUserTurn)
        #expect(!anthropic.isContinuation)
    }

    @Test(arguments: [#"[]"#, #"[{"role":"assistant","content":"Hi"}]"#])
    func noUserMessageIsNeitherNewTurnNorContinuation(_ messageList: String) throws {
        let anthropic = try request(messageList)
        #expect(anthropic.newestUserText == nil)
        #expect(!anthropic.isNewUserTurn)
        #expect(!anthropic.isContinuation)
    }

    @Test func messageTextsHoldSystemAndEveryMessage() throws {
        let anthropic = try messages(
            #"{"system":[{"type":"text","text":"S1"},{"type":"text","text":"S2"}],"messages":[{"role":"user","#
                + #""content":"a"},{"role":"assistant","content":[{"type":"text","text":"b"},{"type":"tool_use","#
                + #""id":"t","name":"n","input":{}}]}]}"#)
        #expect(anthropic.messageTexts == ["S1\nS2", "a", "b"])
    }
}

// MARK: - Injection

@Suite struct MessagesInjectionTests {
    private func injected(_ body: String, _ placement: MemoryPlacement = .system, _ block: String = "MEM") throws
        -> String
    {
        var anthropic = try messages(body)
        anthropic.inject(block, placement: placement)
        return string(anthropic.serialized())
    }

    /// The body up to its `messages` member: `tools` and `system` precede it in every body below, so a prefix match
    /// shows they were left byte-identical.
    private func beforeMessages(_ body: String) -> String {
        let text = Array(body.utf8)
        let key = Array(#""messages":"#.utf8)
        for start in text.indices where text[start...].starts(with: key) {
            return String(decoding: text[..<start], as: UTF8.self)
        }
        return body
    }

    // Without prompt caching: in `system`.

    @Test func stringSystemGetsBlockAfterBlankLine() throws {
        let body =
            #"{"model":"claude-opus-4-6","max_tokens":1024,"system":"You are terse.","messages":[{"role":"user","#
            + #""content":"hi"}],"temperature":0.0,"metadata":{"user_id":"u1"}}"#
        let expected =
            #"{"model":"claude-opus-4-6","max_tokens":1024,"system":"You are terse.\n\nMEM","messages":[{"role":"#
            + #""user","content":"hi"}],"temperature":0.0,"metadata":{"user_id":"u1"}}"#
        #expect(try injected(body) == expected)
    }

    @Test func arraySystemGetsOneMoreTextBlock() throws {
        let body =
            #"{"system":[{"type":"text","text":"Policy"}],"messages":[{"role":"user","content":"hi"}],"stream":true}"#
        let expected =
            #"{"system":[{"type":"text","text":"Policy"},{"type":"text","text":"MEM"}],"messages":[{"role":"user","#
            + #""content":"hi"}],"stream":true}"#
        #expect(try injected(body) == expected)
    }

    @Test func absentOrEmptySystemIsSet() throws {
        #expect(
            try injected(#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
                == #"{"model":"m","messages":[{"role":"user","content":"hi"}],"system":"MEM"}"#)
        #expect(
            try injected(#"{"system":"","messages":[{"role":"user","content":"hi"}]}"#)
                == #"{"system":"MEM","messages":[{"role":"user","content":"hi"}]}"#)
    }

    // With prompt caching (or `last_user`): the last user message's last text block.

    @Test func detectsCacheControlAnywhere() throws {
        let cached = [
            #"{"cache_control":{"type":"ephemeral"},"messages":[]}"#,
            #"{"system":[{"type":"text","text":"S","cache_control":{"type":"ephemeral"}}],"messages":[]}"#,
            #"{"tools":[{"name":"t","input_schema":{},"cache_control":{"type":"ephemeral"}}],"messages":[]}"#,
            #"{"messages":[{"role":"user","content":[{"type":"text","text":"q","cache_control":{"type":"#
                + #""ephemeral"}}]}]}"#,
            #"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"#
                + #""text","text":"r","cache_control":{"type":"ephemeral"}}]}]}]}"#,
        ]
        for body in cached { #expect(try messages(body).usesPromptCaching, "\(body)") }
        let uncached =
            #"{"system":"mention \"cache_control\" in text","messages":[{"role":"user","content":"cache_control"}]}"#
        #expect(try !messages(uncached).usesPromptCaching)
    }

    @Test func cacheControlInSystemLeavesSystemAndToolsByteIdentical() throws {
        let head =
            #"{"model":"claude-opus-4-6","max_tokens":1024,"tools":[{"name":"get_weather","description":"Get the "#
            + #"weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}},"required":["#
            + #""location"]}}],"system":[{"type":"text","text":"Long policy…","cache_control":{"type":"ephemeral"}}],"#
            + #""messages":[{"role":"user","content":"old"},{"role":"assistant","content":"ok"},{"role":"user","#
            + #""content":"#
        let body = head + #""Where do I live?"}]}"#
        let output = try injected(body)
        #expect(output == head + #"[{"type":"text","text":"Where do I live?"},{"type":"text","text":"MEM"}]}]}"#)
        #expect(output.hasPrefix(beforeMessages(body)))
        #expect(output.hasPrefix(head))
    }

    @Test func cacheControlInToolsLeavesStringSystemAlone() throws {
        let head =
            #"{"tools":[{"name":"a","input_schema":{"type":"object"}},{"name":"b","input_schema":{"type":"object"},"#
            + #""cache_control":{"type":"ephemeral","ttl":"1h"}}],"system":"You are terse.","messages":[{"role":"#
            + #""user","content":[{"type":"text","text":"q"}"#
        let output = try injected(head + "]}]}")
        #expect(output == head + #",{"type":"text","text":"MEM"}]}]}"#)
        #expect(output.hasPrefix(beforeMessages(head)))
    }

    @Test func cacheControlOnAnEarlierMessageBlockLeavesSystemAlone() throws {
        let head =
            #"{"system":"S","messages":[{"role":"user","content":[{"type":"text","text":"long doc","cache_control":{"#
            + #""type":"ephemeral"}}]},{"role":"assistant","content":"ok"},{"role":"user","content":"#
        let output = try injected(head + #""next"}]}"#)
        #expect(output == head + #"[{"type":"text","text":"next"},{"type":"text","text":"MEM"}]}]}"#)
    }

    @Test func cachedToolLoopAppendsBlockAfterToolResults() throws {
        let head =
            #"{"system":[{"type":"text","text":"S","cache_control":{"type":"ephemeral"}}],"messages":"#
            + String(toolLoop.dropLast(3))
        let output = try injected(head + "]}]}")
        #expect(output == head + #",{"type":"text","text":"MEM"}]}]}"#)
        let last = try #require(try messages(output).serializedLastUserContent)
        #expect(last.first?.objectValue?["type"]?.stringValue == "tool_result")
        #expect(last.last == .object(JSONObject([("type", .string("text")), ("text", .string("MEM"))])))
    }

    @Test func topLevelCacheControlMovesOntoTheClientsLastBlock() throws {
        let body =
            #"{"model":"m","cache_control":{"type":"ephemeral","ttl":"1h"},"system":"S","messages":[{"role":"user","#
            + #""content":"old"},{"role":"assistant","content":"ok"},{"role":"user","content":"new"}],"max_tokens":8}"#
        let expected =
            #"{"model":"m","system":"S","messages":[{"role":"user","content":"old"},{"role":"assistant","#
            + #""content":"ok"},{"role":"user","content":[{"type":"text","text":"new","cache_control":{"type":"#
            + #""ephemeral","ttl":"1h"}},{"type":"text","text":"MEM"}]}],"max_tokens":8}"#
        #expect(try injected(body) == expected)
    }

    @Test func topLevelCacheControlMovesOntoATrailingToolResult() throws {
        let body =
            #"{"cache_control":{"type":"ephemeral"},"messages":[{"role":"user","content":"q"},{"role":"assistant","#
            + #""content":[{"type":"tool_use","id":"t","name":"n","input":{}}]},{"role":"user","content":[{"type":"#
            + #""tool_result","tool_use_id":"t","content":"r"}]}]}"#
        let expected =
            #"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use","id":"t","#
            + #""name":"n","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","#
            + #""content":"r","cache_control":{"type":"ephemeral"}},{"type":"text","text":"MEM"}]}]}"#
        #expect(try injected(body, .lastUser) == expected)
    }

    @Test func lastUserPlacementWithoutCachingLeavesSystemAlone() throws {
        let head = #"{"system":"S","messages":[{"role":"user","content":"#
        #expect(
            try injected(head + #""hi"}]}"#, .lastUser)
                == head + #"[{"type":"text","text":"hi"},{"type":"text","text":"MEM"}]}]}"#)
    }

    @Test(arguments: [MemoryPlacement.system, .lastUser])
    func emptyBlockLeavesRequestByteIdentical(_ placement: MemoryPlacement) throws {
        for body in [
            #"{"system":"S","messages":[{"role":"user","content":"hi"}],"temperature":0.50}"#,
            #"{"cache_control":{"type":"ephemeral"},"system":"S","messages":[{"role":"user","content":"hi"}]}"#,
        ] {
            #expect(try injected(body, placement, "") == body)
        }
    }

    @Test func untouchedRequestReserializesIdentically() throws {
        let body =
            #"{"model":"claude-opus-4-6","max_tokens":0,"thinking":{"type":"enabled","budget_tokens":1024},"#
            + #""messages":[{"role":"user","content":"😀 \"q\""},{"role":"assistant","content":[{"type":"thinking","#
            + #""thinking":"…","signature":"sig"}]}],"stop_sequences":["\n\nHuman:"],"top_k":5,"top_p":0.90}"#
        #expect(string(try messages(body).serialized()) == body)
        #expect(string(try AnthropicMessagesDialect.parse(bytes(body)).serialized()) == body)
    }
}

extension MessagesRequest {
    /// The last user message's content blocks, read back from the serialized request.
    fileprivate var serializedLastUserContent: [JSONValue]? {
        guard case .object(let root)? = try? JSON.parse(serialized()),
            let last = root["messages"]?.arrayValue?.last(where: { $0.objectValue?["role"] == .string("user") })
        else { return nil }
        return last.objectValue?["content"]?.arrayValue
    }
}

// MARK: - Validation

@Suite struct MessagesValidationTests {
    private func error(_ body: String) -> RequestValidationError? {
        validationError(AnthropicMessagesDialect.self, body)
    }

    @Test(arguments: [
        (#"{"model":"m","max_tokens":1}"#, "messages"),
        (#"{"messages":"hi"}"#, "messages"),
        (#"{"messages":{"role":"user","content":"q"}}"#, "messages"),
        (#"{"messages":null}"#, "messages"),
        (#"{"messages":[{"role":"user","content":"q"},"hi"]}"#, "messages[1]"),
        (#"{"messages":[{"content":"q"}]}"#, "messages[0].role"),
    ])
    func messagesAreValidated(_ body: String, _ param: String) {
        let failure = error(body)
        #expect(failure?.code == "invalid_messages")
        #expect(failure?.param == param)
    }
}

// MARK: - Replies from recorded event sequences

/// An Anthropic Messages event stream as the API frames it: `event: <name>` then `data: {"type":<name>,...}`
/// and a blank line.
private struct MessagesStream {
    private(set) var text = ""

    init(id: String = "msg_01XFDUDYJgAACzvnptvVoYEL") {
        add(
            "message_start",
            #""message":{"id":"\#(id)","type":"message","role":"assistant","content":[],"model":"claude-opus-4-6","#
                + #""stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}"#)
    }

    mutating func add(_ type: String, _ fields: String = "") {
        text += "event: \(type)\ndata: {\"type\":\"\(type)\"\(fields.isEmpty ? "" : ",")\(fields)}\n\n"
    }

    mutating func raw(_ event: String) {
        text += event
    }

    mutating func ping() {
        text += "event: ping\ndata: {\"type\": \"ping\"}\n\n"
    }

    mutating func textBlock(_ index: Int, _ deltas: [String], stop: Bool = true) {
        add("content_block_start", #""index":\#(index),"content_block":{"type":"text","text":""}"#)
        for delta in deltas {
            add("content_block_delta", #""index":\#(index),"delta":{"type":"text_delta","text":\#(jsonString(delta))}"#)
        }
        if stop { add("content_block_stop", #""index":\#(index)"#) }
    }

    mutating func toolUseBlock(_ index: Int, id: String, name: String, fragments: [String]) {
        add(
            "content_block_start",
            #""index":\#(index),"content_block":{"type":"tool_use","id":"\#(id)","name":"\#(name)","input":{}}"#)
        for fragment in fragments {
            add(
                "content_block_delta",
                #""index":\#(index),"delta":{"type":"input_json_delta","partial_json":\#(jsonString(fragment))}"#)
        }
        add("content_block_stop", #""index":\#(index)"#)
    }

    mutating func finish(_ stopReason: String, stop: Bool = true) {
        add(
            "message_delta",
            #""delta":{"stop_reason":"\#(stopReason)","stop_sequence":null},"usage":{"output_tokens":89}"#)
        if stop { add("message_stop") }
    }
}

@Suite struct MessagesReplyStreamTests {
    private let deltas = ["Bonjour", " — café", " \"à\" 日本\n", "🌤️ ", "time."]

    @Test func textStreamWithPing() {
        var stream = MessagesStream()
        stream.textBlock(0, Array(deltas.prefix(1)), stop: false)
        stream.ping()
        for delta in deltas.dropFirst() {
            stream.add("content_block_delta", #""index":0,"delta":{"type":"text_delta","text":\#(jsonString(delta))}"#)
        }
        stream.add("content_block_stop", #""index":0"#)
        stream.finish("end_turn")
        let reply = expectSameReplyAtEverySplit(
            MessagesReplyAccumulator.self, stream.text, text: deltas.joined(), isComplete: true)
        #expect(reply.stopReason == "end_turn")
        #expect(!reply.sawError)
        #expect(reply.responseID == nil)
    }

    /// Text, then a tool call whose input arrives as JSON fragments, then a tool call with an empty input.
    private var toolUseStream: String {
        var stream = MessagesStream()
        stream.textBlock(0, ["Okay, let's check the weather", " in Zürich — ☀️?"])
        stream.toolUseBlock(
            1, id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6", name: "get_weather",
            fragments: ["", #"{"location":"#, #" "Zü"#, #"rich, CH""#, #", "unit": "cel"#, #"sius", "days": 3}"#])
        stream.ping()
        stream.toolUseBlock(2, id: "toolu_02", name: "get_time", fragments: [""])
        stream.finish("tool_use")
        return stream.text
    }

    private let toolUseText =
        "Okay, let's check the weather in Zürich — ☀️?\n"
        + #"tool_call get_weather({"location":"Zürich, CH","unit":"celsius","days":3})"# + "\n"
        + "tool_call get_time({})"

    @Test func toolUseStreamStoresTheSameLinesAsTheBody() {
        let reply = expectSameReplyAtEverySplit(
            MessagesReplyAccumulator.self, toolUseStream, text: toolUseText, isComplete: true)
        #expect(reply.stopReason == "tool_use")

        var body = MessagesReplyAccumulator()
        body.consumeBody(
            bytes(
                #"{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-opus-4-6","#
                    + #""content":[{"type":"text","text":"Okay, let's check the weather in Zürich — ☀️?"},{"type":"#
                    + #""tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location": "#
                    + #""Zürich, CH", "unit": "celsius", "days": 3}},{"type":"tool_use","id":"toolu_02","#
                    + #""name":"get_time","input":{}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"#
                    + #""input_tokens":472,"output_tokens":89}}"#))
        #expect(body.text == toolUseText)
        #expect(body.text == reply.text)
        #expect(body.isComplete)
    }

    @Test func thinkingBlocksAreNotStored() {
        var stream = MessagesStream()
        stream.add("content_block_start", #""index":0,"content_block":{"type":"thinking","thinking":""}"#)
        stream.add("content_block_delta", #""index":0,"delta":{"type":"thinking_delta","thinking":"Hmm… 考え"}"#)
        stream.add("content_block_delta", #""index":0,"delta":{"type":"signature_delta","signature":"EqQB"}"#)
        stream.add("content_block_stop", #""index":0"#)
        stream.textBlock(1, ["Réponse."])
        stream.finish("end_turn")
        expectSameReplyAtEverySplit(MessagesReplyAccumulator.self, stream.text, text: "Réponse.", isComplete: true)
    }

    @Test func streamWithoutMessageStopIsNotComplete() {
        var stream = MessagesStream()
        stream.textBlock(0, deltas)
        stream.finish("end_turn", stop: false)
        let reply = expectSameReplyAtEverySplit(
            MessagesReplyAccumulator.self, stream.text, text: deltas.joined(), isComplete: false)
        #expect(reply.stopReason == "end_turn")
        #expect(!reply.sawError)
    }

    @Test func errorEventMidStreamIsNotComplete() {
        var stream = MessagesStream()
        stream.textBlock(0, ["Par", "tial — é"], stop: false)
        stream.raw(
            "event: error\n"
                + #"data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"# + "\n\n")
        let reply = expectSameReplyAtEverySplit(
            MessagesReplyAccumulator.self, stream.text, text: "Partial — é", isComplete: false)
        #expect(reply.sawError)
    }

    @Test func errorEventMakesEvenAStoppedStreamIncomplete() {
        var stream = MessagesStream()
        stream.textBlock(0, ["Par", "tial — é"])
        stream.add("error", #""error":{"type":"api_error","message":"Internal server error"}"#)
        stream.finish("end_turn")
        let reply = expectSameReplyAtEverySplit(
            MessagesReplyAccumulator.self, stream.text, text: "Partial — é", isComplete: false)
        #expect(reply.sawError)
    }
}

@Suite struct MessagesReplyBodyTests {
    @Test func textAndToolUseBlocksInOrder() {
        var reply = MessagesReplyAccumulator()
        reply.consumeBody(
            bytes(
                #"{"id":"msg_1","type":"message","role":"assistant","model":"claude-opus-4-6","content":[{"#
                    + #""type":"thinking","thinking":"…","signature":"s"},{"type":"text","text":"Checking "},{"#
                    + #""type":"text","text":"two cities."},{"type":"tool_use","id":"t1","name":"get_weather","#
                    + #""input":{"city":"Paris","nested":{"a":[1,2.50]}}},{"type":"text","text":"Done — ok."}],"#
                    + #""stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5}}"#))
        #expect(
            reply.text
                == "Checking two cities.\n" + #"tool_call get_weather({"city":"Paris","nested":{"a":[1,2.50]}})"#
                + "\nDone — ok.")
        #expect(reply.stopReason == "tool_use")
        #expect(reply.isComplete)
        #expect(reply.responseID == nil)
    }

    @Test func errorBodyIsNotComplete() {
        var reply = MessagesReplyAccumulator()
        reply.consumeBody(
            bytes(
                #"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"#
                    + #""request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#))
        #expect(reply.sawError)
        #expect(!reply.isComplete)
        #expect(reply.text == "")
    }
}
