import Testing

@testable import MemProxyCore

@Suite struct SSEParserTests {
    static let sample =
        ": keep-alive\n\n"
        + "event: message\ndata: {\"a\":1}\nid: 7\n\n"
        + "data:first\r\ndata: second\r\n\r\n"
        + "data: é😀 snow ☃\rdata:  two spaces\r\r"
        + "retry: 100\ndata\n\n"
        + "event: only-event\n\n"
        + "data: [DONE]\n\n"

    static let expected = [
        SSEEvent(event: "message", data: #"{"a":1}"#, id: "7"),
        SSEEvent(data: "first\nsecond"),
        SSEEvent(data: "é😀 snow ☃\n two spaces"),
        SSEEvent(data: ""),
        SSEEvent(data: "[DONE]"),
    ]

    private func parseAll(_ chunks: [[UInt8]]) -> [SSEEvent] {
        var parser = SSEParser()
        var events: [SSEEvent] = []
        for chunk in chunks { events += parser.feed(chunk) }
        return events + parser.finish()
    }

    @Test func parsesSampleInOneChunk() {
        #expect(parseAll([bytes(Self.sample)]) == Self.expected)
    }

    @Test func anySplitPointGivesTheSameEvents() {
        let all = bytes(Self.sample)
        for split in 0...all.count {
            let events = parseAll([Array(all[..<split]), Array(all[split...])])
            #expect(events == Self.expected, "split at byte \(split)")
        }
    }

    @Test func byteAtATimeGivesTheSameEvents() {
        #expect(parseAll(bytes(Self.sample).map { [$0] }) == Self.expected)
    }

    @Test func crlfSplitBetweenCRAndLFIsOneLineEnd() {
        var parser = SSEParser()
        #expect(parser.feed(bytes("data: a\r")).isEmpty)
        #expect(parser.feed(bytes("\n\r")) == [SSEEvent(data: "a")])
        #expect(parser.feed(bytes("\ndata: b\r\n\r\n")) == [SSEEvent(data: "b")])
    }

    @Test func commentsAndUnknownFieldsAreIgnored() {
        var parser = SSEParser()
        let events = parser.feed(bytes(":comment\ndata: x\n: another\nfoo: bar\ndata: y\n\n:tail\n\n"))
        #expect(events == [SSEEvent(data: "x\ny")])
    }

    @Test func onlyOneSpaceAfterColonIsStripped() {
        var parser = SSEParser()
        #expect(parser.feed(bytes("data:   x \n\n")) == [SSEEvent(data: "  x ")])
    }

    @Test func finishDispatchesUnterminatedEvent() {
        var parser = SSEParser()
        #expect(parser.feed(bytes("data: a\ndata: b")).isEmpty)
        #expect(parser.finish() == [SSEEvent(data: "a\nb")])
        #expect(parser.finish().isEmpty)
    }

    @Test func idIsPerEventAndRejectsNUL() {
        var parser = SSEParser()
        let events = parser.feed(bytes("id: 1\ndata: a\n\ndata: b\n\nid: x\u{0}y\ndata: c\n\n"))
        #expect(events == [SSEEvent(data: "a", id: "1"), SSEEvent(data: "b"), SSEEvent(data: "c")])
    }

    @Test func oversizedEventIsDroppedAndParsingContinues() {
        var parser = SSEParser(maxEventBytes: 64)
        var events = parser.feed(bytes("data: small\n\n"))
        events += parser.feed(bytes("data: " + String(repeating: "x", count: 50) + "\n"))
        events += parser.feed(bytes("data: " + String(repeating: "y", count: 50) + "\n"))
        events += parser.feed(bytes(String(repeating: "z", count: 1000) + "\n\n"))
        events += parser.feed(bytes("data: after\n\n"))
        #expect(events == [SSEEvent(data: "small"), SSEEvent(data: "after")])
    }

    @Test func defaultCapIs16MiB() {
        var parser = SSEParser()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
        var events = parser.feed(bytes("data: "))
        for _ in 0..<17 { events += parser.feed(chunk) }
        events += parser.feed(bytes("\n\ndata: ok\n\n"))
        #expect(events == [SSEEvent(data: "ok")])
    }
}
