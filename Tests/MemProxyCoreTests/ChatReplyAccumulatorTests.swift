import Testing

@testable import MemProxyCore

@Suite struct ChatReplyAccumulatorTests {
    private func chunk(_ choices: String, extra: String = "") -> String {
        #"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":"# + choices + extra
            + "}\n\n"
    }

    @Test func realisticStreamedReply() {
        let stream =
            chunk(#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#)
            + chunk(#"[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]"#)
            + ": keep-alive\n\n"
            + chunk(#"[{"index":0,"delta":{"content":", wörld 😀"},"finish_reason":null}]"#)
            + chunk(#"[{"index":0,"delta":{},"finish_reason":"stop"}]"#)
            + chunk("[]", extra: #","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}"#)
            + "data: [DONE]\n\n"
        let all = bytes(stream)
        for split in stride(from: 0, through: all.count, by: 7) {
            var accumulator = ChatReplyAccumulator()
            accumulator.consumeStream(all[..<split])
            accumulator.consumeStream(all[split...])
            accumulator.finishStream()
            #expect(accumulator.text == "Hello, wörld 😀")
            #expect(accumulator.finishReason == "stop")
            #expect(accumulator.sawDone)
            #expect(!accumulator.sawError)
        }
    }

    @Test func interleavedChoicesKeepOnlyIndexZero() {
        var accumulator = ChatReplyAccumulator()
        accumulator.consumeStream(
            bytes(
                chunk(#"[{"index":1,"delta":{"content":"B1"}}]"#)
                    + chunk(#"[{"index":0,"delta":{"content":"A1"}}]"#)
                    + chunk(#"[{"index":1,"delta":{"content":"B2"}},{"index":0,"delta":{"content":"A2"}}]"#)
                    + chunk(#"[{"index":1,"delta":{},"finish_reason":"length"}]"#)
                    + chunk(#"[{"index":0,"delta":{},"finish_reason":"stop"}]"#)
                    + "data: [DONE]\n\n"))
        #expect(accumulator.text == "A1A2")
        #expect(accumulator.finishReason == "stop")
    }

    @Test func toolCallFragmentsAreMergedByIndex() {
        var accumulator = ChatReplyAccumulator()
        let calls = [
            #"[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]"#,
            #"[{"index":0,"function":{"arguments":"{\"city\":"}}]"#,
            #"[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]"#,
            #"[{"index":0,"function":{"arguments":"\"Paris\"}"}}]"#,
        ]
        var stream = chunk(#"[{"index":0,"delta":{"role":"assistant","content":null}}]"#)
        for call in calls {
            stream += chunk(#"[{"index":0,"delta":{"tool_calls":"# + call + "}}]")
        }
        stream += chunk(#"[{"index":0,"delta":{},"finish_reason":"tool_calls"}]"#) + "data: [DONE]\n\n"
        accumulator.consumeStream(bytes(stream))
        #expect(accumulator.text == "tool_call get_weather({\"city\":\"Paris\"})\ntool_call get_time({})")
        #expect(accumulator.finishReason == "tool_calls")
    }

    @Test func refusalIsCollected() {
        var accumulator = ChatReplyAccumulator()
        accumulator.consumeStream(bytes(chunk(#"[{"index":0,"delta":{"refusal":"I can't"}}]"#)))
        accumulator.consumeStream(bytes(chunk(#"[{"index":0,"delta":{"refusal":" help."}}]"#)))
        #expect(accumulator.text == "I can't help.")
    }

    @Test func errorsAndGarbageNeverCrash() {
        var accumulator = ChatReplyAccumulator()
        accumulator.consumeStream(bytes("data: {not json\n\ndata: [1,2]\n\ndata: \u{FF}\n\n"))
        accumulator.consumeStream([0xFF, 0xFE, 0x0A, 0x0A])
        accumulator.consumeStream(bytes(chunk(#"[{"index":0,"delta":{"content":"partial"}}]"#)))
        accumulator.consumeStream(bytes(#"data: {"error":{"message":"boom","type":"server_error"}}"# + "\n\n"))
        accumulator.finishStream()
        #expect(accumulator.sawError)
        #expect(!accumulator.sawDone)
        #expect(accumulator.text == "partial")
    }

    @Test func otherObjectTypesAreIgnored() {
        var accumulator = ChatReplyAccumulator()
        accumulator.consumeStream(
            bytes(#"data: {"object":"something.else","choices":[{"index":0,"delta":{"content":"x"}}]}"# + "\n\n"))
        #expect(accumulator.text == "")
    }

    @Test func textIsCappedAt1MiB() {
        var accumulator = ChatReplyAccumulator()
        let piece = String(repeating: "é", count: 100_000)  // 200 KB each
        for _ in 0..<8 {
            accumulator.consumeStream(bytes(chunk(#"[{"index":0,"delta":{"content":""# + piece + #""}}]"#)))
        }
        #expect(accumulator.text.utf8.count == 1 << 20)
        #expect(accumulator.text.unicodeScalars.allSatisfy { $0 == "é" })
    }

    @Test func nonStreamedCompletionWithToolCalls() {
        let body = """
            {"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":\
            {"role":"assistant","content":"Checking.","refusal":null,"tool_calls":[{"id":"call_1","type":"function",\
            "function":{"name":"lookup","arguments":"{\\"q\\":\\"rex\\"}"}}]},"logprobs":null,\
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}
            """
        var accumulator = ChatReplyAccumulator()
        accumulator.consumeCompletion(bytes(body))
        #expect(accumulator.text == "Checking.\ntool_call lookup({\"q\":\"rex\"})")
        #expect(accumulator.finishReason == "tool_calls")
        #expect(!accumulator.sawError)
    }

    @Test func nonStreamedCompletionWithTextPartsAndSecondChoice() {
        let body =
            #"{"object":"chat.completion","choices":[{"index":1,"message":{"content":"no"}},"#
            + #"{"index":0,"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},"#
            + #""finish_reason":"stop"}]}"#
        var accumulator = ChatReplyAccumulator()
        accumulator.consumeCompletion(bytes(body))
        #expect(accumulator.text == "a\nb")
        #expect(accumulator.finishReason == "stop")
    }

    @Test func completionErrorBody() {
        var accumulator = ChatReplyAccumulator()
        accumulator.consumeCompletion(bytes(#"{"error":{"message":"bad","type":"invalid_request_error"}}"#))
        #expect(accumulator.sawError)
        #expect(accumulator.text == "")
        var garbage = ChatReplyAccumulator()
        garbage.consumeCompletion(bytes("<html>"))
        #expect(!garbage.sawError)
    }
}
