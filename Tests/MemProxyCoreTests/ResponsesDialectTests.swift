import Testing

@testable import MemProxyCore

private func responses(_ body: String) throws -> ResponsesRequest {
    try ResponsesRequest(body: bytes(body))
}

// MARK: - Newest user text and turn kind

@Suite struct ResponsesRequestTurnTests {
    @Test func stringInputIsTheNewUserTurn() throws {
        let request = try responses(#"{"model":"gpt-4.1","input":"Where do I live? — Zürich 🏔"}"#)
        #expect(request.model == "gpt-4.1")
        #expect(request.newestUserText == "Where do I live? — Zürich 🏔")
        #expect(request.isNewUserTurn)
        #expect(!request.isContinuation)
        #expect(request.continuedResponseID == nil)
        #expect(!request.isStateful)
    }

    @Test func lastUserMessageItemWithStringContent() throws {
        let request = try responses(
            #"{"input":[{"role":"user","content":"first question"},{"type":"message","role":"assistant","#
                + #""id":"msg_1","status":"completed","content":[{"type":"output_text","text":"first answer","#
                + #""annotations":[]}]},{"type":"message","role":"user","content":"second question"}]}"#)
        #expect(request.newestUserText == "second question")
        #expect(request.isNewUserTurn)
        #expect(!request.isContinuation)
    }

    @Test func arrayContentJoinsInputTextParts() throws {
        let request = try responses(
            #"{"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"Describe"},"#
                + #"{"type":"input_image","detail":"auto","image_url":"https://example.com/a.png"},"#
                + #"{"type":"input_text","text":"briefly, s'il vous plaît"}]}]}"#)
        #expect(request.newestUserText == "Describe\nbriefly, s'il vous plaît")
        #expect(request.isNewUserTurn)
    }

    @Test(arguments: ["developer", "system"])
    func easyMessagesWithoutTypeAndATrailingInstructionMessage(_ role: String) throws {
        let request = try responses(
            #"{"input":[{"role":"developer","content":"Be terse."},{"role":"user","content":[{"type":"input_text","#
                + #""text":"hello"}]},{"role":""# + role + #"","content":"late rule"}]}"#)
        #expect(request.newestUserText == "hello")
        #expect(request.isNewUserTurn)
        #expect(!request.isContinuation)
    }

    @Test func newUserMessageAfterAnEarlierToolLoopIsNewTurn() throws {
        let request = try responses(
            #"{"input":[{"role":"user","content":"Weather in Paris?"},{"type":"function_call","id":"fc_1","#
                + #""call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"},"#
                + #"{"type":"function_call_output","call_id":"call_1","output":"18°C"},{"type":"message","#
                + #""role":"assistant","content":[{"type":"output_text","text":"18°C.","annotations":[]}]},"#
                + #"{"role":"user","content":"And Rome?"}]}"#)
        #expect(request.newestUserText == "And Rome?")
        #expect(request.isNewUserTurn)
        #expect(!request.isContinuation)
    }

    @Test func statelessToolLoopRoundTripIsContinuation() throws {
        let request = try responses(
            #"{"model":"gpt-4.1","input":[{"role":"user","content":"Weather in Paris?"},{"type":"reasoning","#
                + #""id":"rs_1","summary":[]},{"type":"function_call","id":"fc_1","call_id":"call_1","#
                + #""name":"get_weather","arguments":"{\"city\":\"Paris\"}"},{"type":"function_call_output","#
                + #""call_id":"call_1","output":"18°C"}]}"#)
        #expect(request.newestUserText == "Weather in Paris?")
        #expect(!request.isNewUserTurn)
        #expect(request.isContinuation)
        #expect(request.continuedResponseID == nil)
    }

    @Test func statelessAssistantAfterUserIsContinuation() throws {
        let request = try responses(
            #"{"input":[{"role":"user","content":"q"},{"role":"assistant","content":"partial"}]}"#)
        #expect(!request.isNewUserTurn)
        #expect(request.isContinuation)
    }

    @Test func statefulFunctionCallOutputOnlyContinuesThePreviousResponse() throws {
        let request = try responses(
            #"{"model":"gpt-4.1","previous_response_id":"resp_abc","input":[{"type":"function_call_output","#
                + #""call_id":"call_1","output":"{\"temp\":18}"}],"tools":[]}"#)
        #expect(request.isStateful)
        #expect(request.newestUserText == nil)
        #expect(!request.isNewUserTurn)
        #expect(request.isContinuation)
        #expect(request.continuedResponseID == "resp_abc")
    }

    @Test func statefulNewUserTurnContinuesNothing() throws {
        let request = try responses(#"{"previous_response_id":"resp_abc","input":"And tomorrow?"}"#)
        #expect(request.isStateful)
        #expect(request.isNewUserTurn)
        #expect(!request.isContinuation)
        #expect(request.continuedResponseID == nil)
    }

    @Test func conversationToolOutputIsContinuationWithoutResponseID() throws {
        for conversation in [#""conv_1""#, #"{"id":"conv_1"}"#] {
            let request = try responses(
                #"{"conversation":"# + conversation
                    + #","input":[{"type":"function_call_output","call_id":"c","output":"ok"}]}"#)
            #expect(request.isStateful)
            #expect(request.isContinuation)
            #expect(request.continuedResponseID == nil)
        }
    }

    @Test func nullStateFieldsAreStateless() throws {
        let request = try responses(
            #"{"previous_response_id":null,"conversation":null,"input":[{"type":"function_call_output","#
                + #""call_id":"c","output":"ok"}]}"#)
        #expect(!request.isStateful)
        #expect(request.isContinuation)
        #expect(request.continuedResponseID == nil)
    }

    @Test(arguments: [
        #"{"model":"m"}"#,
        #"{"input":""}"#,
        #"{"input":[]}"#,
        #"{"input":null}"#,
        #"{"input":[{"role":"developer","content":"d"}]}"#,
    ])
    func noUserMessageIsNeitherNewTurnNorContinuation(_ body: String) throws {
        let request = try responses(body)
        #expect(request.newestUserText == nil)
        #expect(!request.isNewUserTurn)
        #expect(!request.isContinuation)
        #expect(request.continuedResponseID == nil)
    }

    @Test func messageTextsHoldInstructionsAndEveryMessage() throws {
        let request = try responses(
            #"{"instructions":"Rules","input":[{"role":"user","content":"a"},{"type":"message","role":"assistant","#
                + #""content":[{"type":"output_text","text":"b","annotations":[]}]},{"type":"function_call_output","#
                + #""call_id":"c","output":"tool out"}]}"#)
        #expect(request.messageTexts == ["Rules", "a", "b"])
        #expect(try responses(#"{"instructions":"","input":"q"}"#).messageTexts == ["q"])
    }
}

// MARK: - Injection

@Suite struct ResponsesInjectionTests {
    private func injected(_ body: String, _ placement: MemoryPlacement, _ block: String = "MEM") throws -> String {
        var request = try responses(body)
        request.inject(block, placement: placement)
        return string(request.serialized())
    }

    @Test func statelessSystemAppendsToInstructionsAfterBlankLine() throws {
        let body =
            #"{"model":"gpt-4.1","instructions":"You are terse.","input":[{"role":"user","content":"hi"}],"#
            + #""temperature":1.0,"x_future":{"n":1e5},"store":false}"#
        let expected =
            #"{"model":"gpt-4.1","instructions":"You are terse.\n\nMEM","input":[{"role":"user","content":"hi"}],"#
            + #""temperature":1.0,"x_future":{"n":1e5},"store":false}"#
        #expect(try injected(body, .system) == expected)
    }

    @Test func statelessSystemSetsMissingNullOrEmptyInstructions() throws {
        #expect(
            try injected(#"{"model":"m","input":"hi","stream":true}"#, .system)
                == #"{"model":"m","input":"hi","stream":true,"instructions":"MEM"}"#)
        #expect(
            try injected(#"{"instructions":null,"input":"hi"}"#, .system) == #"{"instructions":"MEM","input":"hi"}"#)
        #expect(try injected(#"{"instructions":"","input":"hi"}"#, .system) == #"{"instructions":"MEM","input":"hi"}"#)
    }

    @Test func statelessLastUserStringInputStaysAString() throws {
        let body = #"{"model":"m","instructions":"Rules","input":"Where do I live?","tools":[]}"#
        #expect(
            try injected(body, .lastUser)
                == #"{"model":"m","instructions":"Rules","input":"Where do I live?\n\nMEM","tools":[]}"#)
    }

    @Test func statelessLastUserMessageStringContent() throws {
        let earlier =
            #"{"input":[{"role":"user","content":"old"},{"type":"message","role":"assistant","content":"#
            + #"[{"type":"output_text","text":"ok","annotations":[]}]},{"role":"user","content":"new"#
        let output = try injected(earlier + #""}],"model":"m"}"#, .lastUser)
        // The string becomes two `input_text` parts (the original, then the block); earlier items are untouched.
        let head = String(earlier.dropLast(#""new"#.count))
        #expect(
            output == head + #"[{"type":"input_text","text":"new"},{"type":"input_text","text":"MEM"}]}],"model":"m"}"#)
    }

    @Test func statelessLastUserArrayContentGetsInputTextPart() throws {
        let body =
            #"{"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"look"},"#
            + #"{"type":"input_image","detail":"auto","file_id":"file_1"}]}],"model":"m"}"#
        let expected =
            #"{"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"look"},"#
            + #"{"type":"input_image","detail":"auto","file_id":"file_1"},{"type":"input_text","text":"MEM"}]}],"#
            + #""model":"m"}"#
        #expect(try injected(body, .lastUser) == expected)
    }

    @Test func statelessLastUserToolLoopLeavesToolItemsAlone() throws {
        let head = #"{"input":[{"role":"user","content":"#
        let tail =
            #"},{"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{}"},"#
            + #"{"type":"function_call_output","call_id":"call_1","output":"18°C"}]}"#
        #expect(
            try injected(head + #""Weather in Paris?""# + tail, .lastUser)
                == head + #"[{"type":"input_text","text":"Weather in Paris?"},{"type":"input_text","text":"MEM"}]"#
                + tail)
    }

    @Test func statelessLastUserWithoutUserMessageUsesInstructions() throws {
        #expect(
            try injected(#"{"input":[{"type":"function_call_output","call_id":"c","output":"x"}]}"#, .lastUser)
                == #"{"input":[{"type":"function_call_output","call_id":"c","output":"x"}],"instructions":"MEM"}"#)
    }

    @Test func nullPreviousResponseIDIsStatelessSoLastUserGoesToInput() throws {
        #expect(
            try injected(#"{"previous_response_id":null,"input":"q"}"#, .lastUser)
                == #"{"previous_response_id":null,"input":"q\n\nMEM"}"#)
    }

    @Test(arguments: [MemoryPlacement.system, .lastUser])
    func previousResponseIDAlwaysUsesInstructions(_ placement: MemoryPlacement) throws {
        #expect(
            try injected(#"{"model":"m","previous_response_id":"resp_1","input":"q","store":true}"#, placement)
                == #"{"model":"m","previous_response_id":"resp_1","input":"q","store":true,"instructions":"MEM"}"#)
        let items =
            #"{"previous_response_id":"resp_1","instructions":"I","input":[{"role":"user","content":[{"type":"#
            + #""input_text","text":"q"}]}]}"#
        let expected =
            #"{"previous_response_id":"resp_1","instructions":"I\n\nMEM","input":[{"role":"user","content":[{"#
            + #""type":"input_text","text":"q"}]}]}"#
        #expect(try injected(items, placement) == expected)
    }

    @Test(arguments: [#""conv_1""#, #"{"id":"conv_1"}"#])
    func conversationAlwaysUsesInstructions(_ conversation: String) throws {
        let body = #"{"conversation":"# + conversation + #","input":[{"role":"user","content":"q"}]}"#
        let expected =
            #"{"conversation":"# + conversation + #","input":[{"role":"user","content":"q"}],"instructions":"MEM"}"#
        #expect(try injected(body, .lastUser) == expected)
        #expect(try injected(body, .system) == expected)
    }

    @Test(arguments: [MemoryPlacement.system, .lastUser])
    func emptyBlockLeavesRequestByteIdentical(_ placement: MemoryPlacement) throws {
        for body in [
            #"{"model":"m","input":"q","temperature":0.70}"#,
            #"{"instructions":"I","input":[{"role":"user","content":"q"}]}"#,
            #"{"previous_response_id":"resp_1","input":[{"type":"function_call_output","call_id":"c","output":"x"}]}"#,
        ] {
            #expect(try injected(body, placement, "") == body)
        }
    }

    @Test func untouchedRequestReserializesIdentically() throws {
        let body =
            #"{"model":"gpt-5","input":[{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAA"},"#
            + #"{"type":"item_reference","id":"msg_1"},{"role":"user","content":[{"type":"input_text","text":"😀","#
            + #""prompt_cache_breakpoint":{"mode":"explicit"}}]}],"prompt_cache_key":"k","top_p":0.10,"seed":-0,"#
            + #""reasoning":{"effort":"low"},"stream":true}"#
        #expect(string(try responses(body).serialized()) == body)
        #expect(string(try ResponsesDialect.parse(bytes(body)).serialized()) == body)
    }
}

// MARK: - Validation

@Suite struct ResponsesValidationTests {
    private func error(_ body: String) -> RequestValidationError? {
        validationError(ResponsesDialect.self, body)
    }

    @Test(arguments: [
        (#"{"input":5}"#, "input"),
        (#"{"input":true}"#, "input"),
        (#"{"input":{"role":"user","content":"q"}}"#, "input"),
        (#"{"input":[{"role":"user","content":"q"},"hi"]}"#, "input[1]"),
        (#"{"input":[null]}"#, "input[0]"),
        (#"{"input":"q","instructions":5}"#, "instructions"),
        (#"{"input":"q","instructions":["a"]}"#, "instructions"),
        (#"{"input":"q","instructions":{"text":"a"}}"#, "instructions"),
    ])
    func fieldsOfTheWrongTypeAreNamed(_ body: String, _ param: String) {
        let failure = error(body)
        #expect(failure?.code == "invalid_request_body")
        #expect(failure?.param == param)
        #expect(failure?.message.contains("\"\(param)\"") == true)
    }

    @Test(arguments: [
        #"{"model":"m"}"#, #"{"input":null,"instructions":null}"#, #"{"input":[],"instructions":"I"}"#,
    ])
    func absentOrNullFieldsAreAccepted(_ body: String) {
        #expect(error(body) == nil)
    }
}

// MARK: - Replies from recorded event sequences

/// A Responses API event stream as the API frames it: `event: <type>` then `data: {"type":<type>,
/// "sequence_number":n,...}` and a blank line; no `[DONE]`.
private struct ResponsesStream {
    private(set) var text = ""
    private var sequence = 0

    mutating func add(_ type: String, _ fields: String) {
        text += "event: \(type)\ndata: {\"type\":\"\(type)\",\"sequence_number\":\(sequence),\(fields)}\n\n"
        sequence += 1
    }
}

/// A `Response` object as the API sends it.
private func response(
    _ id: String, status: String, output: String = "[]", error: String = "null", incompleteDetails: String = "null"
) -> String {
    #"{"id":"\#(id)","object":"response","created_at":1741290958,"status":"\#(status)","error":\#(error),"#
        + #""incomplete_details":\#(incompleteDetails),"instructions":null,"max_output_tokens":null,"#
        + #""model":"gpt-4.1-2025-04-14","#
        + #""output":\#(output),"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"#
        + #""summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","#
        + #""tools":[],"top_p":1.0,"truncation":"disabled","usage":null,"user":null,"metadata":{}}"#
}

private func messageItem(_ id: String, _ text: String, status: String = "completed") -> String {
    #"{"id":"\#(id)","type":"message","status":"\#(status)","role":"assistant","content":[{"type":"output_text","#
        + #""annotations":[],"logprobs":[],"text":\#(jsonString(text))}]}"#
}

private func functionCallItem(_ id: String, name: String, arguments: String, status: String = "completed") -> String {
    #"{"id":"\#(id)","type":"function_call","status":"\#(status)","arguments":\#(jsonString(arguments)),"#
        + #""call_id":"call_\#(id)","name":"\#(name)"}"#
}

/// Events that start a response: `response.created` and `response.in_progress`.
private func started(_ id: String) -> ResponsesStream {
    var stream = ResponsesStream()
    stream.add("response.created", #""response":\#(response(id, status: "in_progress"))"#)
    stream.add("response.in_progress", #""response":\#(response(id, status: "in_progress"))"#)
    return stream
}

/// The events of one streamed `message` output item with `deltas` as its text, up to `output_item.done`.
private func addMessage(_ stream: inout ResponsesStream, index: Int, id: String, deltas: [String], done: Bool = true) {
    let text = deltas.joined()
    let place = #""item_id":"\#(id)","output_index":\#(index),"content_index":0"#
    stream.add(
        "response.output_item.added",
        #""output_index":\#(index),"item":{"id":"\#(id)","type":"message","status":"in_progress","#
            + #""role":"assistant","content":[]}"#)
    stream.add("response.content_part.added", place + #","part":{"type":"output_text","text":"","annotations":[]}"#)
    for (number, delta) in deltas.enumerated() {
        stream.add(
            "response.output_text.delta",
            place + #","delta":\#(jsonString(delta)),"logprobs":[],"obfuscation":"x\#(number)Yz""#)
    }
    guard done else { return }
    stream.add("response.output_text.done", place + #","text":\#(jsonString(text)),"logprobs":[]"#)
    stream.add(
        "response.content_part.done",
        place + #","part":{"type":"output_text","annotations":[],"logprobs":[],"text":\#(jsonString(text))}"#)
    stream.add("response.output_item.done", #""output_index":\#(index),"item":\#(messageItem(id, text))"#)
}

@Suite struct ResponsesReplyStreamTests {
    private let deltas = ["Bonjour", "! It's café", " time in 日本", " \"today\"\n🌤️", " — enjoy."]
    private var replyText: String { deltas.joined() }

    private func textStream(completed: Bool = true, errorBeforeCompletion: Bool = false) -> String {
        var stream = started("resp_67c9fdcecf488190bdd9a0409de3a1ec")
        addMessage(&stream, index: 0, id: "msg_67c9fdcf37fc8190", deltas: deltas)
        if errorBeforeCompletion {
            stream.add("error", #""code":null,"message":"Something went wrong.","param":null"#)
        }
        if completed {
            let output = "[" + messageItem("msg_67c9fdcf37fc8190", replyText) + "]"
            let final = response("resp_67c9fdcecf488190bdd9a0409de3a1ec", status: "completed", output: output)
            stream.add("response.completed", #""response":\#(final)"#)
        }
        return stream.text
    }

    @Test func textStreamEndingInResponseCompleted() {
        let reply = expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, textStream(), text: replyText, isComplete: true)
        #expect(reply.responseID == "resp_67c9fdcecf488190bdd9a0409de3a1ec")
        #expect(reply.status == "completed")
        #expect(!reply.sawError)
    }

    @Test func completedWithoutFinalBlankLineIsStillProcessedAtStreamEnd() {
        var transcript = textStream()
        transcript.removeLast()
        expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, transcript, text: replyText, isComplete: true, everyOffset: false)
    }

    @Test func toleratesATrailingDone() {
        expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, textStream() + "data: [DONE]\n\n", text: replyText, isComplete: true,
            everyOffset: false)
    }

    @Test func streamCutBeforeTheTerminalEventIsNotComplete() {
        let reply = expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, textStream(completed: false), text: replyText, isComplete: false,
            everyOffset: false)
        #expect(reply.status == nil)
        #expect(reply.responseID == "resp_67c9fdcecf488190bdd9a0409de3a1ec")
    }

    @Test func responseIDComesFromResponseCreated() {
        var stream = ResponsesStream()
        stream.add("response.created", #""response":\#(response("resp_créé", status: "in_progress"))"#)
        let reply = expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, stream.text, text: "", isComplete: false)
        #expect(reply.responseID == "resp_créé")
    }

    /// Reasoning, then a message, then a function call whose arguments arrive as deltas.
    private var functionCallStream: (transcript: String, output: String) {
        let arguments = #"{"city":"Zürich","unit":"c"}"#
        let message = "Let me check the weather in Zürich — 一瞬."
        var stream = started("resp_fc")
        stream.add(
            "response.output_item.added",
            #""output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}"#)
        stream.add(
            "response.output_item.done",
            #""output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}"#)
        addMessage(&stream, index: 1, id: "msg_1", deltas: ["Let me check the weather", " in Zürich — 一瞬."])
        let added = functionCallItem("fc_1", name: "get_weather", arguments: "", status: "in_progress")
        stream.add("response.output_item.added", #""output_index":2,"item":\#(added)"#)
        for delta in [#"{"city":"#, #""Zürich","unit""#, #":"c"}"#] {
            stream.add(
                "response.function_call_arguments.delta",
                #""item_id":"fc_1","output_index":2,"delta":\#(jsonString(delta)),"obfuscation":"ab""#)
        }
        stream.add(
            "response.function_call_arguments.done",
            #""item_id":"fc_1","output_index":2,"name":"get_weather","arguments":\#(jsonString(arguments))"#)
        let call = functionCallItem("fc_1", name: "get_weather", arguments: arguments)
        stream.add("response.output_item.done", #""output_index":2,"item":\#(call)"#)
        let output =
            #"[{"id":"rs_1","type":"reasoning","summary":[]},\#(messageItem("msg_1", message)),\#(call)]"#
        stream.add("response.completed", #""response":\#(response("resp_fc", status: "completed", output: output))"#)
        return (stream.text, output)
    }

    @Test func functionCallStreamStoresTextThenToolCallLine() {
        let expected =
            "Let me check the weather in Zürich — 一瞬.\n" + #"tool_call get_weather({"city":"Zürich","unit":"c"})"#
        let (transcript, output) = functionCallStream
        let reply = expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, transcript, text: expected, isComplete: true, everyOffset: false)
        #expect(reply.responseID == "resp_fc")

        var body = ResponsesReplyAccumulator()
        body.consumeBody(bytes(response("resp_fc", status: "completed", output: output)))
        #expect(body.text == expected)
    }

    @Test func functionCallArgumentsFromDoneEventAlone() {
        var stream = started("resp_2")
        stream.add(
            "response.function_call_arguments.done",
            #""item_id":"fc_9","output_index":0,"name":"lookup","arguments":"{\"q\":\"naïve\"}""#)
        stream.add("response.completed", #""response":\#(response("resp_2", status: "completed"))"#)
        expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, stream.text, text: #"tool_call lookup({"q":"naïve"})"#, isComplete: true,
            everyOffset: false)
    }

    @Test func finalResponseOutputIsReadWhenNoDeltasCame() {
        var stream = started("resp_3")
        let final = response("resp_3", status: "completed", output: "[" + messageItem("msg_3", "Só isto.") + "]")
        stream.add("response.completed", #""response":\#(final)"#)
        expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, stream.text, text: "Só isto.", isComplete: true, everyOffset: false)
    }

    @Test func streamEndingInResponseFailedAfterNestedErrorEvent() {
        var stream = started("resp_f")
        addMessage(&stream, index: 0, id: "msg_f", deltas: ["Partial ré", "ponse 日"], done: false)
        stream.add(
            "error",
            #""error":{"type":"server_error","code":"server_error","message":"The server had an error.","param":null}"#)
        let failed = response(
            "resp_f", status: "failed", error: #"{"code":"server_error","message":"The server had an error."}"#)
        stream.add("response.failed", #""response":\#(failed)"#)
        let reply = expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, stream.text, text: "Partial réponse 日", isComplete: false,
            everyOffset: false)
        #expect(reply.sawError)
        #expect(reply.status == "failed")
    }

    @Test func streamEndingInResponseFailedAlone() {
        var stream = started("resp_f")
        addMessage(&stream, index: 0, id: "msg_f", deltas: ["Partial ré"], done: false)
        let failed = response(
            "resp_f", status: "failed", error: #"{"code":"server_error","message":"The model failed."}"#)
        stream.add("response.failed", #""response":\#(failed)"#)
        let reply = expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, stream.text, text: "Partial ré", isComplete: false, everyOffset: false)
        #expect(!reply.sawError)
        #expect(reply.status == "failed")
    }

    @Test func streamEndingInResponseIncomplete() {
        var stream = started("resp_i")
        addMessage(&stream, index: 0, id: "msg_i", deltas: ["Cut at the token limit — ", "日本"])
        let incomplete = response(
            "resp_i", status: "incomplete",
            output: "[" + messageItem("msg_i", "Cut at the token limit — 日本", status: "incomplete") + "]",
            incompleteDetails: #"{"reason":"max_output_tokens"}"#)
        stream.add("response.incomplete", #""response":\#(incomplete)"#)
        let reply = expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, stream.text, text: "Cut at the token limit — 日本", isComplete: false,
            everyOffset: false)
        #expect(reply.status == "incomplete")
        #expect(reply.responseID == "resp_i")
    }

    @Test func flatErrorEventEndsTheStreamIncomplete() {
        var stream = started("resp_e")
        addMessage(&stream, index: 0, id: "msg_e", deltas: ["Hal", "f — é"], done: false)
        stream.add("error", #""code":"rate_limit_exceeded","message":"Slow down.","param":null"#)
        let reply = expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, stream.text, text: "Half — é", isComplete: false, everyOffset: false)
        #expect(reply.sawError)
    }

    @Test func anErrorEventMakesEvenACompletedStreamIncomplete() {
        let reply = expectSameReplyAtEverySplit(
            ResponsesReplyAccumulator.self, textStream(errorBeforeCompletion: true), text: replyText,
            isComplete: false, everyOffset: false)
        #expect(reply.sawError)
        #expect(reply.status == "completed")
    }
}

@Suite struct ResponsesReplyBodyTests {
    @Test func messageAndFunctionCallItemsInOutputOrder() {
        let output =
            #"[{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"thinking"}]},"#
            + functionCallItem("fc_1", name: "get_weather", arguments: #"{"city":"Paris"}"#) + ","
            + messageItem("msg_1", "Checking Paris — 🌧.") + "]"
        var reply = ResponsesReplyAccumulator()
        reply.consumeBody(bytes(response("resp_body", status: "completed", output: output)))
        #expect(reply.text == #"tool_call get_weather({"city":"Paris"})"# + "\nChecking Paris — 🌧.")
        #expect(reply.responseID == "resp_body")
        #expect(reply.isComplete)
        #expect(!reply.sawError)
    }

    @Test func refusalPartIsTheText() {
        let output =
            #"[{"id":"msg_r","type":"message","status":"completed","role":"assistant","content":[{"type":"refusal","#
            + #""refusal":"I can't help with that."}]}]"#
        var reply = ResponsesReplyAccumulator()
        reply.consumeBody(bytes(response("resp_r", status: "completed", output: output)))
        #expect(reply.text == "I can't help with that.")
    }

    @Test func incompleteStatusIsNotComplete() {
        var reply = ResponsesReplyAccumulator()
        let output = "[" + messageItem("msg_i", "Cut", status: "incomplete") + "]"
        reply.consumeBody(bytes(response("resp_i", status: "incomplete", output: output)))
        #expect(reply.text == "Cut")
        #expect(reply.status == "incomplete")
        #expect(!reply.isComplete)
    }

    @Test func failedStatusIsNotComplete() {
        var reply = ResponsesReplyAccumulator()
        reply.consumeBody(
            bytes(
                response(
                    "resp_f", status: "failed", error: #"{"code":"server_error","message":"The model failed."}"#)))
        #expect(!reply.isComplete)
        #expect(reply.responseID == "resp_f")
    }

    @Test func errorBodyIsNotComplete() {
        var reply = ResponsesReplyAccumulator()
        reply.consumeBody(
            bytes(
                #"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"#
                    + #""code":"invalid_api_key"}}"#))
        #expect(reply.sawError)
        #expect(!reply.isComplete)
        #expect(reply.text == "")
        #expect(reply.responseID == nil)
    }
}
