import Testing

@testable import MemProxyCore

@Suite struct ChatRequestInjectionTests {
    private func injected(_ body: String, _ block: String = "MEM") throws -> String {
        var request = try ChatRequest(body: bytes(body))
        request.inject(block)
        return string(request.serialized())
    }

    @Test func appendsToStringSystemMessage() throws {
        let body =
            #"{"model":"gpt-4o","temperature":1.0,"messages":[{"role":"system","content":"Be brief.","name":"s"},"#
            + #"{"role":"user","content":"hi"}],"x_future":{"n":1e5},"stream":false}"#
        let expected =
            #"{"model":"gpt-4o","temperature":1.0,"messages":"#
            + #"[{"role":"system","content":"Be brief.\n\nMEM","name":"s"},"#
            + #"{"role":"user","content":"hi"}],"x_future":{"n":1e5},"stream":false}"#
        #expect(try injected(body) == expected)
    }

    @Test func appendsPartToSystemContentArray() throws {
        let body = #"{"messages":[{"role":"system","content":[{"type":"text","text":"A","cache":true}]}],"n":-0}"#
        let expected =
            #"{"messages":[{"role":"system","content":[{"type":"text","text":"A","cache":true},"#
            + #"{"type":"text","text":"MEM"}]}],"n":-0}"#
        #expect(try injected(body) == expected)
    }

    @Test func appendsToDeveloperMessage() throws {
        let body = #"{"messages":[{"content":"Rules","role":"developer"},{"role":"user","content":"q"}],"model":"o3"}"#
        let expected =
            #"{"messages":[{"content":"Rules\n\nMEM","role":"developer"},{"role":"user","content":"q"}],"model":"o3"}"#
        #expect(try injected(body) == expected)
    }

    @Test func fillsNullOrMissingSystemContent() throws {
        #expect(
            try injected(#"{"messages":[{"role":"system","content":null}]}"#)
                == #"{"messages":[{"role":"system","content":"MEM"}]}"#)
        #expect(
            try injected(#"{"messages":[{"role":"system"}]}"#) == #"{"messages":[{"role":"system","content":"MEM"}]}"#)
        #expect(
            try injected(#"{"messages":[{"role":"system","content":""}]}"#)
                == #"{"messages":[{"role":"system","content":"MEM"}]}"#)
    }

    @Test func insertsSystemMessageWhenFirstIsNotSystem() throws {
        let body = #"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"system","content":"late"}]}"#
        let expected =
            #"{"model":"m","messages":[{"role":"system","content":"MEM"},{"role":"user","content":"hi"},"#
            + #"{"role":"system","content":"late"}]}"#
        #expect(try injected(body) == expected)
    }

    @Test func insertsSystemMessageIntoEmptyMessages() throws {
        #expect(
            try injected(#"{"messages":[],"model":"m"}"#)
                == #"{"messages":[{"role":"system","content":"MEM"}],"model":"m"}"#)
    }

    @Test func insertsSystemMessageWhenSystemContentHasUnexpectedType() throws {
        #expect(
            try injected(#"{"messages":[{"role":"system","content":5}]}"#)
                == #"{"messages":[{"role":"system","content":"MEM"},{"role":"system","content":5}]}"#)
    }

    @Test func blockTextIsEscaped() throws {
        #expect(
            try injected(#"{"messages":[]}"#, "<memory>\n- \"q\" \\ é\n</memory>")
                == #"{"messages":[{"role":"system","content":"<memory>\n- \"q\" \\ é\n</memory>"}]}"#)
    }

    @Test func emptyBlockChangesNothing() throws {
        let body = #"{"messages":[{"role":"user","content":"hi"}]}"#
        #expect(try injected(body, "") == body)
    }

    @Test func untouchedRequestReserializesIdentically() throws {
        let body = #"{"model":"gpt-4o","messages":[{"role":"user","content":"😀 a/b"}],"top_p":0.10,"seed":-0}"#
        #expect(string(try ChatRequest(body: bytes(body)).serialized()) == body)
    }
}

@Suite struct ChatRequestReadingTests {
    @Test func streamAndModel() throws {
        let streaming = try ChatRequest(body: bytes(#"{"model":"gpt-4o","stream":true,"messages":[]}"#))
        #expect(streaming.isStream)
        #expect(streaming.model == "gpt-4o")
        let plain = try ChatRequest(body: bytes(#"{"stream":"true","model":5,"messages":[]}"#))
        #expect(!plain.isStream)
        #expect(plain.model == nil)
    }

    @Test func newestUserTextUsesLastUserMessage() throws {
        let request = try ChatRequest(
            body: bytes(
                #"{"messages":[{"role":"user","content":"first"},{"role":"assistant","content":"ok"},"#
                    + #"{"role":"user","content":[{"type":"text","text":"a"},"#
                    + #"{"type":"image_url","image_url":{"url":"x"}},"#
                    + #"{"type":"text","text":"b"}]},{"role":"tool","tool_call_id":"t","content":"tool out"}]}"#))
        #expect(request.newestUserText == "a\nb")
        #expect(request.messageTexts == ["first", "ok", "a\nb", "tool out"])
    }

    @Test func newestUserTextIsNilWithoutUserText() throws {
        #expect(try ChatRequest(body: bytes(#"{"messages":[{"role":"system","content":"s"}]}"#)).newestUserText == nil)
        let imageOnly =
            #"{"messages":[{"role":"user","content":"old"},"#
            + #"{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#
        #expect(try ChatRequest(body: bytes(imageOnly)).newestUserText == nil)
        #expect(try ChatRequest(body: bytes(#"{"messages":[{"role":"user","content":""}]}"#)).newestUserText == nil)
    }

    @Test func messageTextsSkipsMessagesWithoutText() throws {
        let request = try ChatRequest(
            body: bytes(
                #"{"messages":[{"role":"assistant","content":null,"tool_calls":[]},"#
                    + #"{"role":"developer","content":"d"}]}"#))
        #expect(request.messageTexts == ["d"])
    }
}

@Suite struct ChatRequestValidationTests {
    private func error(_ body: String) -> RequestValidationError? {
        do {
            _ = try ChatRequest(body: bytes(body))
            return nil
        } catch {
            return error
        }
    }

    @Test func invalidJSONCarriesParserMessage() {
        let failure = error(#"{"messages":[}"#)
        #expect(failure?.code == "invalid_json")
        #expect(failure?.param == nil)
        #expect(failure?.message.contains("unexpected character '}' at byte 13") == true)
    }

    @Test func tooDeepIsInvalidJSON() throws {
        let deep =
            #"{"messages":[],"x":"# + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}"
        #expect(error(deep)?.code == "invalid_json")
        #expect(try ChatRequest(body: bytes(deep), maxDepth: 300).messageTexts == [])
    }

    @Test(arguments: ["[]", "\"text\"", "null", "3"])
    func bodyMustBeAnObject(_ body: String) {
        let failure = error(body)
        #expect(failure?.code == "invalid_request_body")
        #expect(failure?.param == nil)
    }

    @Test(arguments: [
        (#"{"model":"m"}"#, "messages"),
        (#"{"messages":{"role":"user"}}"#, "messages"),
        (#"{"messages":null}"#, "messages"),
        (#"{"messages":[{"role":"user","content":"a"},"hi"]}"#, "messages[1]"),
        (#"{"messages":[{"role":"user"},{"role":"user"},{"role":"user"},{"content":"x"}]}"#, "messages[3].role"),
        (#"{"messages":[{"role":7}]}"#, "messages[0].role"),
    ])
    func messagesAreValidated(_ body: String, _ param: String) {
        let failure = error(body)
        #expect(failure?.code == "invalid_messages")
        #expect(failure?.param == param)
        #expect(failure?.message.contains(param) == true)
    }
}
