import Testing

@testable import MemProxyCore

// MARK: - Chat completions: `last_user` placement

@Suite struct ChatLastUserPlacementTests {
    private func injected(_ body: String, _ placement: MemoryPlacement = .lastUser, _ block: String = "MEM") throws
        -> String
    {
        var request = try ChatRequest(body: bytes(body))
        request.inject(block, placement: placement)
        return string(request.serialized())
    }

    @Test func stringContentGetsBlockAfterBlankLineAndEarlierMessagesStayByteIdentical() throws {
        let earlier =
            #"{"model":"gpt-4o","messages":[{"role":"system","content":"You are terse."},"#
            + #"{"role":"user","content":"old question","name":"u"},{"role":"assistant","content":"old answer"},"#
            + #"{"role":"user","content":"Where do I live?"#
        let body = earlier + #""}],"temperature":0.20,"x_future":{"n":1e5}}"#
        let output = try injected(body)
        #expect(output == earlier + #"\n\nMEM"}],"temperature":0.20,"x_future":{"n":1e5}}"#)
        #expect(output.hasPrefix(earlier))
    }

    @Test func arrayContentGetsOneMoreTextPart() throws {
        let body =
            #"{"messages":[{"role":"developer","content":"Rules"},{"role":"user","content":[{"type":"text","#
            + #""text":"What is this?"},{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"low"}}]}]}"#
        let expected =
            #"{"messages":[{"role":"developer","content":"Rules"},{"role":"user","content":[{"type":"text","#
            + #""text":"What is this?"},{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"low"}},"#
            + #"{"type":"text","text":"MEM"}]}]}"#
        #expect(try injected(body) == expected)
    }

    @Test func toolLoopRoundTripPutsBlockOnNewestUserMessageAndLeavesToolMessagesAlone() throws {
        let head = #"{"messages":[{"role":"user","content":"Weather in Paris?"#
        let tail =
            #""},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","#
            + #""function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"#
            + #"{"role":"tool","tool_call_id":"call_1","content":"18°C"}]}"#
        #expect(try injected(head + tail) == head + #"\n\nMEM"# + tail)
    }

    @Test func emptyUserStringBecomesTheBlock() throws {
        #expect(
            try injected(#"{"messages":[{"role":"user","content":""}]}"#)
                == #"{"messages":[{"role":"user","content":"MEM"}]}"#)
    }

    @Test func withoutUserMessageFallsBackToSystemPrompt() throws {
        #expect(
            try injected(#"{"messages":[{"role":"system","content":"S"}]}"#)
                == #"{"messages":[{"role":"system","content":"S\n\nMEM"}]}"#)
        #expect(
            try injected(#"{"messages":[{"role":"assistant","content":"hi"}]}"#)
                == #"{"messages":[{"role":"system","content":"MEM"},{"role":"assistant","content":"hi"}]}"#)
    }

    @Test func systemPlacementInjectsIntoFirstSystemMessage() throws {
        let body = #"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"q"}]}"#
        #expect(
            try injected(body, .system)
                == #"{"messages":[{"role":"system","content":"S\n\nMEM"},{"role":"user","content":"q"}]}"#)
    }

    @Test(arguments: [MemoryPlacement.system, .lastUser])
    func emptyBlockLeavesRequestByteIdentical(_ placement: MemoryPlacement) throws {
        let body = #"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"q"}],"top_p":0.10}"#
        #expect(try injected(body, placement, "") == body)
    }
}

// MARK: - Chat completions: continuation turns

@Suite struct ChatContinuationTests {
    private func request(_ messages: String) throws -> ChatRequest {
        try ChatRequest(body: bytes(#"{"model":"gpt-4o","messages":"# + messages + "}"))
    }

    @Test func userMessageLastIsNewUserTurn() throws {
        let chat = try request(
            #"[{"role":"system","content":"S"},{"role":"user","content":"a"},{"role":"assistant","content":"b"},"#
                + #"{"role":"user","content":"c"}]"#)
        #expect(chat.newestUserText == "c")
        #expect(chat.isNewUserTurn)
        #expect(!chat.isContinuation)
        #expect(chat.continuedResponseID == nil)
    }

    @Test func systemMessageAfterUserStillNewUserTurn() throws {
        let chat = try request(#"[{"role":"user","content":"c"},{"role":"system","content":"late"}]"#)
        #expect(chat.isNewUserTurn)
        #expect(!chat.isContinuation)
    }

    @Test func toolLoopRoundTripIsContinuationRecallingWithTheUserText() throws {
        let chat = try request(
            #"[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":null,"tool_calls":"#
                + #"[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},"#
                + #"{"role":"tool","tool_call_id":"call_1","content":"18°C"}]"#)
        #expect(chat.newestUserText == "Weather in Paris?")
        #expect(!chat.isNewUserTurn)
        #expect(chat.isContinuation)
    }

    @Test func legacyFunctionResultIsContinuation() throws {
        let chat = try request(
            #"[{"role":"user","content":"q"},{"role":"assistant","content":null,"function_call":"#
                + #"{"name":"f","arguments":"{}"}},{"role":"function","name":"f","content":"r"}]"#)
        #expect(!chat.isNewUserTurn)
        #expect(chat.isContinuation)
    }

    @Test func noUserMessageIsNeitherNewTurnNorContinuation() throws {
        for messages in [#"[]"#, #"[{"role":"system","content":"S"},{"role":"assistant","content":"hi"}]"#] {
            let chat = try request(messages)
            #expect(chat.newestUserText == nil)
            #expect(!chat.isNewUserTurn)
            #expect(!chat.isContinuation)
        }
    }

    @Test func userMessageWithoutTextIsNotNewTurn() throws {
        let chat = try request(#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]"#)
        #expect(!chat.isNewUserTurn)
        #expect(!chat.isContinuation)
    }
}

// MARK: - Placement option and dialect metadata

@Suite struct DialectMetadataTests {
    @Test func placementParsesConfigurationValues() {
        #expect(MemoryPlacement("system") == .system)
        #expect(MemoryPlacement("last_user") == .lastUser)
        #expect(MemoryPlacement("lastUser") == nil)
        #expect(MemoryPlacement("") == nil)
        #expect(MemoryPlacement.lastUser.description == "last_user")
        #expect(MemoryPlacement.system.description == "system")
    }

    @Test func dialectsNameTheirAPIAndErrorShape() {
        #expect(ChatCompletionsDialect.api == "chat.completions")
        #expect(ResponsesDialect.api == "responses")
        #expect(AnthropicMessagesDialect.api == "messages")
        #expect(ChatCompletionsDialect.errors == .openAI)
        #expect(ResponsesDialect.errors == .openAIResponses)
        #expect(AnthropicMessagesDialect.errors == .anthropic)
        #expect(!ChatCompletionsDialect.continuesResponses)
        #expect(ResponsesDialect.continuesResponses)
        #expect(!AnthropicMessagesDialect.continuesResponses)
    }

    private func reserialized<D: WireDialect>(_: D.Type, _ body: String, placement: MemoryPlacement) throws -> String {
        var request = try D.parse(bytes(body))
        request.inject("", placement: placement)
        return string(request.serialized())
    }

    @Test(arguments: ["[]", "[1]", "\"text\"", "null", "3"])
    func everyDialectRequiresAnObjectBody(_ body: String) {
        for failure in [
            validationError(ChatCompletionsDialect.self, body), validationError(ResponsesDialect.self, body),
            validationError(AnthropicMessagesDialect.self, body),
        ] {
            #expect(failure?.code == "invalid_request_body")
            #expect(failure?.param == nil)
        }
    }

    @Test func everyDialectRejectsInvalidJSON() {
        for failure in [
            validationError(ChatCompletionsDialect.self, #"{"messages":[}"#),
            validationError(ResponsesDialect.self, #"{"input":"#),
            validationError(AnthropicMessagesDialect.self, #"{"messages":[{"role":"user","content":"é}]}"#),
        ] {
            #expect(failure?.code == "invalid_json")
            #expect(failure?.param == nil)
        }
    }

    @Test(arguments: [MemoryPlacement.system, .lastUser])
    func everyDialectReemitsAnUntouchedRequestByteIdentical(_ placement: MemoryPlacement) throws {
        let chat = #"{"model":"m","messages":[{"role":"user","content":"😀 \"q\""}],"n":1.50,"x":[null,true,-0]}"#
        let responses =
            #"{"model":"m","instructions":"I","input":[{"role":"user","content":"q"},{"type":"item_reference","#
            + #""id":"msg_1"}],"prompt_cache_key":"k","temperature":1.0}"#
        let messages =
            #"{"model":"claude","max_tokens":1024,"cache_control":{"type":"ephemeral"},"system":[{"type":"text","#
            + #""text":"S","cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[{"role":"user","#
            + #""content":"q"}],"thinking":{"type":"enabled","budget_tokens":2048}}"#
        #expect(try reserialized(ChatCompletionsDialect.self, chat, placement: placement) == chat)
        #expect(try reserialized(ResponsesDialect.self, responses, placement: placement) == responses)
        #expect(try reserialized(AnthropicMessagesDialect.self, messages, placement: placement) == messages)
    }
}

// MARK: - Error shapes

@Suite struct ErrorShapeTests {
    private let error = WireError(
        status: 400, message: "Bad \"input\"\nfix it — é", type: "invalid_request_error", param: "input",
        code: "invalid_request_body")
    private let openAIBody =
        #"{"error":{"message":"Bad \"input\"\nfix it — é","type":"invalid_request_error","param":"input","#
        + #""code":"invalid_request_body"}}"#

    @Test func openAIBodyAndStreamEvent() {
        #expect(ErrorShape.openAI.body(error) == openAIBody)
        #expect(ErrorShape.openAI.streamEvent(error) == "data: " + openAIBody + "\n\n")
    }

    @Test func nullParam() {
        let noParam = WireError(
            status: 502, message: "Upstream gone.", type: "server_error", code: "upstream_disconnected")
        #expect(
            ErrorShape.openAI.body(noParam)
                == #"{"error":{"message":"Upstream gone.","type":"server_error","param":null,"#
                + #""code":"upstream_disconnected"}}"#)
        #expect(
            ErrorShape.openAIResponses.streamEvent(noParam)
                == "event: error\n"
                + #"data: {"type":"error","code":"upstream_disconnected","message":"Upstream gone.","param":null}"#
                + "\n\n")
    }

    @Test func responsesBodyIsOpenAIsAndStreamIsAnErrorEvent() {
        #expect(ErrorShape.openAIResponses.body(error) == openAIBody)
        #expect(
            ErrorShape.openAIResponses.streamEvent(error)
                == "event: error\n"
                + #"data: {"type":"error","code":"invalid_request_body","message":"Bad \"input\"\nfix it — é","#
                + #""param":"input"}"# + "\n\n")
    }

    @Test func anthropicBodyAndStreamEvent() {
        let body = #"{"type":"error","error":{"type":"invalid_request_error","message":"Bad \"input\"\nfix it — é"}}"#
        #expect(ErrorShape.anthropic.body(error) == body)
        #expect(ErrorShape.anthropic.streamEvent(error) == "event: error\ndata: " + body + "\n\n")
    }

    @Test(arguments: [
        (400, "invalid_request_error"), (401, "authentication_error"), (402, "billing_error"),
        (403, "permission_error"), (404, "not_found_error"), (413, "request_too_large"),
        (422, "invalid_request_error"), (429, "rate_limit_error"), (500, "api_error"), (502, "api_error"),
        (503, "api_error"), (504, "timeout_error"), (529, "overloaded_error"),
    ])
    func anthropicErrorTypeFollowsStatus(_ status: Int, _ type: String) {
        #expect(ErrorShape.anthropicType(status: status) == type)
        let error = WireError(status: status, message: "m", type: "server_error", code: "c")
        #expect(
            ErrorShape.anthropic.body(error) == #"{"type":"error","error":{"type":""# + type + #"","message":"m"}}"#)
    }

    /// Each route's stream error, read back by that route's own reply accumulator, reports the failure.
    @Test func streamEventsAreSeenAsErrorsByTheirDialect() {
        var chat = ChatReplyAccumulator()
        chat.consumeStream(bytes(ErrorShape.openAI.streamEvent(error)))
        chat.finishStream()
        #expect(chat.sawError)
        #expect(!chat.isComplete)

        var responses = ResponsesReplyAccumulator()
        responses.consumeStream(bytes(ErrorShape.openAIResponses.streamEvent(error)))
        responses.finishStream()
        #expect(responses.sawError)

        var messages = MessagesReplyAccumulator()
        messages.consumeStream(bytes(ErrorShape.anthropic.streamEvent(error)))
        messages.finishStream()
        #expect(messages.sawError)

        var parser = SSEParser()
        let events = parser.feed(bytes(ErrorShape.anthropic.streamEvent(error)))
        #expect(events.count == 1)
        #expect(events.first?.event == "error")
        #expect((try? JSON.parse(bytes(events.first?.data ?? ""))) != nil)
    }
}

// MARK: - Helpers shared by the dialect tests

/// The error `D` rejects `body` with, or `nil` if it accepts it.
func validationError<D: WireDialect>(_: D.Type, _ body: String) -> RequestValidationError? {
    do {
        _ = try D.parse(bytes(body))
        return nil
    } catch {
        return error
    }
}

/// `text` as a JSON string literal, quotes included.
func jsonString(_ text: String) -> String {
    var out: [UInt8] = []
    JSONValue.writeString(text, into: &out)
    return string(out)
}

/// The reply an accumulator collects from `transcript` fed in pieces cut at `cuts` (ascending byte offsets), with
/// the stream then ended.
func collect<A: ReplyAccumulator>(_: A.Type, _ transcript: [UInt8], cuts: [Int] = []) -> A {
    var reply = A()
    var start = 0
    for cut in cuts + [transcript.count] {
        reply.consumeStream(transcript[start..<cut])
        start = cut
    }
    reply.finishStream()
    return reply
}

/// Feeds `transcript` whole, byte by byte, and cut once at every byte offset (so inside every multi-byte UTF-8
/// character and in the middle of every line), expecting the same text, completeness and response id each time.
///
/// Each cut re-reads the whole transcript, so for long transcripts `everyOffset: false` cuts only next to or inside
/// every multi-byte character and at every fifth offset (mid-line everywhere else); byte by byte covers the rest.
/// - Returns: The accumulator fed the whole transcript at once.
@discardableResult
func expectSameReplyAtEverySplit<A: ReplyAccumulator>(
    _ type: A.Type, _ transcript: String, text: String, isComplete: Bool, everyOffset: Bool = true,
    sourceLocation: SourceLocation = #_sourceLocation
) -> A {
    let all = bytes(transcript)
    #expect(
        all.contains { $0 & 0xC0 == 0x80 }, "the transcript should hold multi-byte characters",
        sourceLocation: sourceLocation)
    let whole = collect(type, all)
    #expect(whole.text == text, sourceLocation: sourceLocation)
    #expect(whole.isComplete == isComplete, sourceLocation: sourceLocation)
    let byteByByte = collect(type, all, cuts: Array(all.indices.dropFirst()))
    #expect(byteByByte.text == text, "byte by byte", sourceLocation: sourceLocation)
    #expect(byteByByte.isComplete == isComplete, "byte by byte", sourceLocation: sourceLocation)
    #expect(byteByByte.responseID == whole.responseID, "byte by byte", sourceLocation: sourceLocation)
    var differing: [Int] = []
    let cuts = (0...all.count).filter { cut in
        everyOffset || cut % 5 == 0 || (cut < all.count && all[cut] >= 0x80) || (cut > 0 && all[cut - 1] >= 0x80)
    }
    for cut in cuts {
        let reply = collect(type, all, cuts: [cut])
        if reply.text != text || reply.isComplete != isComplete || reply.responseID != whole.responseID {
            differing.append(cut)
        }
    }
    #expect(
        differing.isEmpty, "differs when cut at byte offsets \(differing.prefix(8))", sourceLocation: sourceLocation)
    return whole
}
