import Foundation
import Testing

@testable import MemProxyCore

// A seeded, time-bounded random generator over the code that handles untrusted bytes: JSON parsing and
// serialization, chat request validation and memory injection, SSE framing and reply accumulation.
//
// Every target runs for MEMPROXY_FUZZ_SECONDS (default 1.5) seconds of iterations; iteration i of a target uses
// seed MEMPROXY_FUZZ_SEED (default 0x5EED) + i, which every failure message names, so a failure reproduces with
// `MEMPROXY_FUZZ_SEED=<seed> MEMPROXY_FUZZ_ITERATIONS=1 swift test --filter FuzzTests`.

/// SplitMix64: tiny, fast, and the same sequence on every platform.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { self.state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func chance(_ probability: Double) -> Bool { Double.random(in: 0..<1, using: &self) < probability }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
}

enum FuzzBudget {
    static let environment = ProcessInfo.processInfo.environment
    static let seconds = environment["MEMPROXY_FUZZ_SECONDS"].flatMap(Double.init) ?? 1.5
    static let baseSeed = environment["MEMPROXY_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5EED
    static let maxIterations = environment["MEMPROXY_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 1_000_000

    /// Runs `body` with one generator per iteration until the time budget is spent; returns the iteration count.
    @discardableResult
    static func run(_ body: (inout SeededGenerator, UInt64) throws -> Void) rethrows -> Int {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        var iteration = 0
        while iteration < maxIterations && (iteration == 0 || ContinuousClock.now < deadline) {
            let seed = baseSeed &+ UInt64(iteration)
            var rng = SeededGenerator(seed: seed)
            try body(&rng, seed)
            iteration += 1
        }
        return iteration
    }
}

// MARK: - Generators

enum Gen {
    /// A Unicode scalar from a mix that stresses escaping: ASCII, JSON specials, C0 controls, DEL, line
    /// separators, 2-, 3- and 4-byte UTF-8.
    static func scalar(_ rng: inout SeededGenerator) -> Unicode.Scalar {
        let value: UInt32
        switch rng.int(0...9) {
        case 0...3: value = UInt32(rng.int(0x20...0x7E))
        case 4: value = UInt32(rng.pick([0x22, 0x5C, 0x2F, 0x00, 0x7F, 0x2028, 0x2029, 0xFEFF, 0xFFFD]))
        case 5: value = UInt32(rng.int(0x00...0x1F))
        case 6: value = UInt32(rng.int(0x80...0x7FF))
        case 7: value = UInt32(rng.chance(0.5) ? rng.int(0x800...0xD7FF) : rng.int(0xE000...0xFFFF))
        default: value = UInt32(rng.int(0x10000...0x10FFFF))
        }
        return Unicode.Scalar(value) ?? "?"
    }

    static func string(_ rng: inout SeededGenerator, maxLength: Int = 12, excluding: Set<Unicode.Scalar> = []) -> String
    {
        var scalars = String.UnicodeScalarView()
        for _ in 0..<rng.int(0...maxLength) {
            let scalar = scalar(&rng)
            if !excluding.contains(scalar) { scalars.append(scalar) }
        }
        return String(scalars)
    }

    /// A valid RFC 8259 number literal.
    static func number(_ rng: inout SeededGenerator) -> String {
        var text = rng.chance(0.3) ? "-" : ""
        text +=
            rng.chance(0.2)
            ? "0" : String(rng.int(1...9)) + String((0..<rng.int(0...6)).map { _ in Character(String(rng.int(0...9))) })
        if rng.chance(0.3) { text += "." + String((0..<rng.int(1...4)).map { _ in Character(String(rng.int(0...9))) }) }
        if rng.chance(0.2) {
            text += rng.pick(["e", "E"]) + rng.pick(["", "+", "-"]) + String(rng.int(0...400))
        }
        return text
    }

    static func value(_ rng: inout SeededGenerator, depth: Int = 0) -> JSONValue {
        let containerOdds = depth < 5 ? 0.35 : 0
        if rng.chance(containerOdds) {
            if rng.chance(0.5) {
                return .array((0..<rng.int(0...5)).map { _ in value(&rng, depth: depth + 1) })
            }
            var pairs: [(String, JSONValue)] = []
            var seen: Set<String> = []
            for _ in 0..<rng.int(0...5) {
                let key = string(&rng, maxLength: 6)
                guard seen.insert(key).inserted else { continue }
                pairs.append((key, value(&rng, depth: depth + 1)))
            }
            return .object(JSONObject(pairs))
        }
        switch rng.int(0...4) {
        case 0: return .null
        case 1: return .bool(rng.chance(0.5))
        case 2: return .number(number(&rng))
        default: return .string(string(&rng))
        }
    }

    /// JSON text for `value` written differently from the serializer: random whitespace, random `\u` escapes
    /// (upper/lower hex, surrogate pairs for astral scalars), escaped `/`.
    static func text(_ value: JSONValue, _ rng: inout SeededGenerator) -> [UInt8] {
        var out: [UInt8] = []
        write(value, &rng, &out)
        return out
    }

    private static func space(_ rng: inout SeededGenerator, _ out: inout [UInt8]) {
        guard rng.chance(0.3) else { return }
        for _ in 0..<rng.int(1...3) { out.append(rng.pick([0x20, 0x09, 0x0A, 0x0D])) }
    }

    private static func write(_ value: JSONValue, _ rng: inout SeededGenerator, _ out: inout [UInt8]) {
        space(&rng, &out)
        switch value {
        case .null: out += Array("null".utf8)
        case .bool(let flag): out += Array((flag ? "true" : "false").utf8)
        case .number(let literal): out += Array(literal.utf8)
        case .string(let text): writeString(text, &rng, &out)
        case .array(let elements):
            out.append(0x5B)
            for (index, element) in elements.enumerated() {
                if index > 0 { out.append(0x2C) }
                write(element, &rng, &out)
            }
            space(&rng, &out)
            out.append(0x5D)
        case .object(let object):
            out.append(0x7B)
            for (index, pair) in object.enumerated() {
                if index > 0 { out.append(0x2C) }
                space(&rng, &out)
                writeString(pair.key, &rng, &out)
                space(&rng, &out)
                out.append(0x3A)
                write(pair.value, &rng, &out)
            }
            space(&rng, &out)
            out.append(0x7D)
        }
        space(&rng, &out)
    }

    private static func hex4(_ unit: UInt16, upper: Bool) -> [UInt8] {
        let digits = Array((upper ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
        return [12, 8, 4, 0].map { digits[Int((unit >> $0) & 0xF)] }
    }

    private static func writeString(_ text: String, _ rng: inout SeededGenerator, _ out: inout [UInt8]) {
        out.append(0x22)
        for scalar in text.unicodeScalars {
            let mustEscape = scalar.value < 0x20 || scalar == "\"" || scalar == "\\"
            if mustEscape || rng.chance(0.15) {
                let upper = rng.chance(0.5)
                if scalar == "/" && rng.chance(0.5) {
                    out += Array(#"\/"#.utf8)
                } else if scalar.value > 0xFFFF {
                    for unit in String(scalar).utf16 { out += Array(#"\u"#.utf8) + hex4(unit, upper: upper) }
                } else if scalar == "\n" && rng.chance(0.5) {
                    out += Array(#"\n"#.utf8)
                } else if (scalar == "\"" || scalar == "\\") && rng.chance(0.5) {
                    out += [0x5C, UInt8(scalar.value)]
                } else {
                    out += Array(#"\u"#.utf8) + hex4(UInt16(scalar.value), upper: upper)
                }
            } else {
                out += Array(String(scalar).utf8)
            }
        }
        out.append(0x22)
    }

    /// `bytes` with 1–4 random edits: flipped, inserted, deleted or duplicated bytes, or truncation.
    static func mutate(_ bytes: [UInt8], _ rng: inout SeededGenerator) -> [UInt8] {
        var bytes = bytes
        for _ in 0..<rng.int(1...4) {
            let position = bytes.isEmpty ? 0 : rng.int(0...(bytes.count - 1))
            switch rng.int(0...5) {
            case 0 where !bytes.isEmpty: bytes[position] = UInt8(truncatingIfNeeded: rng.next())
            case 1:
                bytes.insert(
                    rng.pick([0x22, 0x5C, 0x7B, 0x7D, 0x5B, 0x5D, 0x2C, 0x3A, 0x00, 0xFF, 0xC3, 0xED]), at: position)
            case 2 where !bytes.isEmpty: bytes.remove(at: position)
            case 3 where !bytes.isEmpty:
                let end = min(bytes.count, position + rng.int(1...16))
                bytes.insert(contentsOf: bytes[position..<end], at: position)
            case 4: bytes = Array(bytes.prefix(position))
            default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: position)
            }
        }
        return bytes
    }
}

// MARK: - JSON

@Suite("Fuzz: JSON")
struct JSONFuzzTests {
    @Test("serialize → parse is the identity, and parse → serialize is idempotent")
    func roundTrip() throws {
        try FuzzBudget.run { rng, seed in
            let value = Gen.value(&rng)
            let compact = value.serialized()
            let parsed = try JSON.parse(compact)
            #expect(parsed == value, "seed \(seed)")
            #expect(parsed.serialized() == compact, "seed \(seed)")
            // The same value written with other escapes and whitespace parses to the same value.
            let other = Gen.text(value, &rng)
            #expect(try JSON.parse(other) == value, "seed \(seed): \(String(decoding: other, as: UTF8.self))")
        }
    }

    @Test("mutated documents either fail with an in-range offset or parse to a value that round-trips")
    func mutations() throws {
        try FuzzBudget.run { (rng: inout SeededGenerator, seed: UInt64) throws in
            let source = Gen.text(Gen.value(&rng), &rng)
            let input =
                rng.chance(0.1)
                ? (0..<rng.int(0...64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) } : Gen.mutate(source, &rng)
            switch Result(catching: { () throws(JSONParseError) -> JSONValue in try JSON.parse(input) }) {
            case .success(let value):
                let compact = value.serialized()
                #expect(try JSON.parse(compact) == value, "seed \(seed)")
                #expect(
                    String(validating: compact, as: UTF8.self) != nil, "seed \(seed): serializer wrote invalid UTF-8")
            case .failure(let error):
                #expect(
                    (0...input.count).contains(error.offset), "seed \(seed): offset \(error.offset) of \(input.count)")
            }
        }
    }

    @Test("nesting deeper than maxDepth is refused, however deep, without recursion")
    func deepNesting() {
        FuzzBudget.run { rng, seed in
            let depth = rng.chance(0.5) ? rng.int(1...200) : rng.int(1_000...200_000)
            let open: UInt8 = rng.chance(0.5) ? 0x5B : 0x7B
            var input: [UInt8] = []
            for _ in 0..<depth { input += open == 0x5B ? [0x5B] : Array(#"{"k":"#.utf8) }
            input += Array("0".utf8)
            input += [UInt8](repeating: open == 0x5B ? 0x5D : 0x7D, count: depth)
            let error = parseError(input)
            #expect((error == nil) == (depth <= 128), "seed \(seed): depth \(depth)")
        }
    }
}

// MARK: - Chat requests and injection

@Suite("Fuzz: chat requests")
struct ChatRequestFuzzTests {
    static func message(_ rng: inout SeededGenerator, valid: Bool) -> JSONValue {
        if !valid && rng.chance(0.3) { return Gen.value(&rng, depth: 4) }
        var pairs: [(String, JSONValue)] = []
        let role: JSONValue =
            valid || rng.chance(0.5)
            ? .string(rng.pick(["system", "developer", "user", "assistant", "tool", "other", ""]))
            : rng.pick([.null, .number("1"), .array([]), .object(JSONObject())])
        let content: JSONValue? =
            switch rng.int(0...5) {
            case 0, 1: .string(Gen.string(&rng))
            case 2:
                .array(
                    (0..<rng.int(0...3)).map { _ in
                        rng.chance(0.7)
                            ? .object(JSONObject([("type", .string("text")), ("text", .string(Gen.string(&rng)))]))
                            : Gen.value(&rng, depth: 4)
                    })
            case 3: .null
            case 4: nil
            default: Gen.value(&rng, depth: 4)
            }
        var fields: [(String, JSONValue)] = []
        if valid || rng.chance(0.5) { fields.append(("role", role)) }
        if let content { fields.append(("content", content)) }
        if rng.chance(0.3) { fields.append(("name", .string(Gen.string(&rng)))) }
        fields.shuffle(using: &rng)
        pairs = fields
        return .object(JSONObject(pairs))
    }

    /// A random body and whether ChatRequest must accept it.
    static func body(_ rng: inout SeededGenerator) -> (JSONValue, valid: Bool) {
        if rng.chance(0.05) { return (Gen.value(&rng), false) }
        let valid = rng.chance(0.8)
        var fields: [(String, JSONValue)] = [("model", .string("gpt-" + Gen.string(&rng, maxLength: 4)))]
        var messages: JSONValue = .array((0..<rng.int(0...6)).map { _ in message(&rng, valid: valid) })
        if !valid && rng.chance(0.3) {
            messages = rng.pick([.null, .string("hi"), .object(JSONObject()), .number("3")])
        }
        if valid || rng.chance(0.8) { fields.append(("messages", messages)) }
        for index in 0..<rng.int(0...4) { fields.append(("x_field_\(index)", Gen.value(&rng, depth: 3))) }
        if rng.chance(0.3) { fields.append(("stream", .bool(rng.chance(0.5)))) }
        fields.shuffle(using: &rng)
        let object = JSONObject(fields)
        let accepted: Bool = {
            guard case .array(let list)? = object["messages"] else { return false }
            return list.allSatisfy { $0.objectValue?["role"]?.stringValue != nil }
        }()
        return (.object(object), accepted)
    }

    /// What `inject(block)` must produce, from the specification in ChatRequest's documentation.
    static func expectedMessages(_ messages: [JSONValue], block: String) -> [JSONValue] {
        let system = JSONValue.object(JSONObject([("role", .string("system")), ("content", .string(block))]))
        guard case .object(var first)? = messages.first,
            let role = first["role"]?.stringValue, role == "system" || role == "developer"
        else { return [system] + messages }
        switch first["content"] {
        case .string(let content)?: first["content"] = .string(content.isEmpty ? block : content + "\n\n" + block)
        case .array(let parts)?:
            first["content"] = .array(
                parts + [.object(JSONObject([("type", .string("text")), ("text", .string(block))]))])
        case .null?, nil: first["content"] = .string(block)
        default: return [system] + messages
        }
        return [.object(first)] + messages.dropFirst()
    }

    @Test("validation accepts exactly the valid bodies; injection edits only the system prompt")
    func validateAndInject() throws {
        try FuzzBudget.run { rng, seed in
            let (body, valid) = Self.body(&rng)
            let bytes = rng.chance(0.5) ? body.serialized() : Gen.text(body, &rng)
            let request: ChatRequest
            switch Result(catching: { () throws(RequestValidationError) -> ChatRequest in try ChatRequest(body: bytes) }
            ) {
            case .success(let parsed):
                request = parsed
            case .failure(let error):
                #expect(!valid, "seed \(seed): a valid body was refused: \(error.message)")
                #expect(["invalid_request_body", "invalid_messages"].contains(error.code), "seed \(seed)")
                return
            }
            #expect(valid, "seed \(seed): an invalid body was accepted")
            let original = try #require(body.objectValue)
            let block = rng.chance(0.1) ? "" : "<memory>\n" + Gen.string(&rng, maxLength: 40) + "\n</memory>"
            var edited = request
            edited.inject(block)
            let output = try #require(try JSON.parse(edited.serialized()).objectValue, "seed \(seed)")
            #expect(output.keys == original.keys, "seed \(seed): field order changed")
            for (key, value) in original where key != "messages" {
                #expect(output[key] == value, "seed \(seed): \(key) changed")
            }
            let messages = try #require(original["messages"]?.arrayValue)
            let expected = block.isEmpty ? messages : Self.expectedMessages(messages, block: block)
            #expect(output["messages"] == .array(expected), "seed \(seed)")
            #expect(edited.newestUserText == request.newestUserText, "seed \(seed)")
            #expect(try ChatRequest(body: edited.serialized()).newestUserText == request.newestUserText, "seed \(seed)")
        }
    }

    @Test("mutated chat bodies are refused with a 400 code or accepted and re-serialized as valid JSON")
    func mutatedBodies() throws {
        try FuzzBudget.run { rng, seed in
            let (body, _) = Self.body(&rng)
            let input = Gen.mutate(body.serialized(), &rng)
            do {
                var request = try ChatRequest(body: input)
                request.inject("<memory>\nx\n</memory>")
                let reparsed = try JSON.parse(request.serialized())
                #expect(reparsed.objectValue?["messages"]?.arrayValue?.isEmpty == false, "seed \(seed)")
            } catch let error as RequestValidationError {
                #expect(
                    ["invalid_json", "invalid_request_body", "invalid_messages"].contains(error.code), "seed \(seed)")
            }
        }
    }
}

// MARK: - SSE and reply accumulation

@Suite("Fuzz: SSE")
struct SSEFuzzTests {
    static let lineBreaks: Set<Unicode.Scalar> = ["\r", "\n"]

    /// Feeds `bytes` in random pieces and returns every event, `finish()` included.
    static func feedInPieces(_ bytes: [UInt8], _ rng: inout SeededGenerator, into parser: inout SSEParser) -> [SSEEvent]
    {
        var events: [SSEEvent] = []
        var index = 0
        while index < bytes.count {
            let size = rng.chance(0.4) ? rng.int(1...3) : rng.chance(0.5) ? rng.int(1...64) : rng.int(1...4096)
            let end = min(bytes.count, index + size)
            events += parser.feed(bytes[index..<end])
            index = end
        }
        return events + parser.finish()
    }

    @Test("random events framed with any line ending and split anywhere come out exactly")
    func framing() {
        FuzzBudget.run { rng, seed in
            let newline = rng.pick(["\n", "\r\n", "\r"])
            var text = ""
            var expected: [SSEEvent] = []
            let count = rng.int(0...8)
            for index in 0..<count {
                var lines: [String?] = []
                let type = rng.chance(0.3) ? "t" + Gen.string(&rng, maxLength: 5, excluding: Self.lineBreaks) : nil
                let id =
                    rng.chance(0.3) ? Gen.string(&rng, maxLength: 5, excluding: Self.lineBreaks.union(["\0"])) : nil
                let data = (0..<rng.int(0...3)).map { _ in Gen.string(&rng, maxLength: 20, excluding: Self.lineBreaks) }
                if let type { lines.append("event: " + type) }
                if let id { lines.append("id: " + id) }
                if rng.chance(0.3) { lines.append(": comment " + Gen.string(&rng, excluding: Self.lineBreaks)) }
                if rng.chance(0.2) { lines.append("retry: 100") }
                // nil marks a data line's slot: data lines keep their order wherever the other fields fall.
                lines += [String?](repeating: nil, count: data.count)
                lines.shuffle(using: &rng)
                var dataLines = data.map { piece in
                    piece.unicodeScalars.first == " " || rng.chance(0.5) ? "data: " + piece : "data:" + piece
                }[...]
                let framed = lines.map { line in line ?? dataLines.popFirst()! }
                let last = index == count - 1
                let terminated = !last || rng.chance(0.7)
                text += framed.map { $0 + newline }.joined() + (terminated ? newline : "")
                if !data.isEmpty {
                    expected.append(SSEEvent(event: type, data: data.joined(separator: "\n"), id: id))
                }
            }
            var parser = SSEParser()
            let events = Self.feedInPieces(Array(text.utf8), &rng, into: &parser)
            #expect(events == expected, "seed \(seed): \(text.debugDescription)")
        }
    }

    @Test("any byte soup gives the same events whole or split, and never grows past the event cap")
    func splitInvariance() {
        FuzzBudget.run { rng, seed in
            let alphabet = Array("data: event:id:\r\n\n\n:x é".utf8) + [0x00, 0xFF, 0xC3]
            let bytes = (0..<rng.int(0...300)).map { _ in
                rng.chance(0.8) ? rng.pick(alphabet) : UInt8(truncatingIfNeeded: rng.next())
            }
            var whole = SSEParser(maxEventBytes: 64)
            let expected = whole.feed(bytes) + whole.finish()
            var split = SSEParser(maxEventBytes: 64)
            #expect(Self.feedInPieces(bytes, &rng, into: &split) == expected, "seed \(seed): \(bytes)")
            #expect(expected.allSatisfy { $0.data.utf8.count <= 64 * 3 }, "seed \(seed)")
        }
    }
}

@Suite("Fuzz: reply accumulation")
struct AccumulatorFuzzTests {
    struct Reply {
        var content: [String] = []
        var refusal: [String] = []
        var tools: [(index: Int, id: String, name: String, arguments: [String])] = []
        var finishReason = "stop"

        var text: String {
            var parts: [String] = []
            if !content.joined().isEmpty { parts.append(content.joined()) }
            if !refusal.joined().isEmpty { parts.append(refusal.joined()) }
            for tool in tools.sorted(by: { $0.index < $1.index }) {
                parts.append("tool_call \(tool.name)(\(tool.arguments.joined()))")
            }
            return parts.joined(separator: "\n")
        }
    }

    static func reply(_ rng: inout SeededGenerator) -> Reply {
        var reply = Reply()
        reply.content = (0..<rng.int(0...8)).map { _ in Gen.string(&rng) }
        if rng.chance(0.2) { reply.refusal = (0..<rng.int(1...3)).map { _ in Gen.string(&rng) } }
        var indexes = Array(0..<4).shuffled(using: &rng)
        for _ in 0..<(rng.chance(0.3) ? rng.int(1...3) : 0) {
            let index = indexes.removeFirst()
            reply.tools.append(
                (
                    index, "call_\(index)", "fn_" + Gen.string(&rng, maxLength: 4),
                    (0..<rng.int(1...4)).map { _ in Gen.string(&rng) }
                ))
        }
        reply.finishReason = rng.pick(["stop", "length", "tool_calls", "content_filter"])
        return reply
    }

    static func chunk(_ choices: [JSONValue], object: String? = "chat.completion.chunk", usage: Bool = false) -> String
    {
        var fields: [(String, JSONValue)] = [("id", .string("chatcmpl-fuzz"))]
        if let object { fields.append(("object", .string(object))) }
        fields.append(("choices", .array(choices)))
        if usage { fields.append(("usage", .object(JSONObject([("total_tokens", .number("3"))])))) }
        return "data: " + String(decoding: JSONValue.object(JSONObject(fields)).serialized(), as: UTF8.self) + "\n\n"
    }

    static func choice(_ index: Int, _ delta: [(String, JSONValue)], finish: String? = nil) -> JSONValue {
        .object(
            JSONObject([
                ("index", .number(String(index))), ("delta", .object(JSONObject(delta))),
                ("finish_reason", finish.map(JSONValue.string) ?? .null),
            ]))
    }

    /// The reply as an OpenAI stream, with noise a real stream may carry: keep-alive comments, a second choice,
    /// chunks of other object types, non-JSON data, chunks without `object`.
    static func stream(_ reply: Reply, _ rng: inout SeededGenerator) -> String {
        var events = [chunk([choice(0, [("role", .string("assistant")), ("content", .string(""))])])]
        var pieces: [[(String, JSONValue)]] = reply.content.map { [("content", .string($0))] }
        pieces += reply.refusal.map { [("refusal", .string($0))] }
        for tool in reply.tools {
            for (position, fragment) in tool.arguments.enumerated() {
                var call: [(String, JSONValue)] = [("index", .number(String(tool.index)))]
                var function: [(String, JSONValue)] = [("arguments", .string(fragment))]
                if position == 0 {
                    call += [("id", .string(tool.id)), ("type", .string("function"))]
                    function.insert(("name", .string(tool.name)), at: 0)
                }
                call.append(("function", .object(JSONObject(function))))
                pieces.append([("tool_calls", .array([.object(JSONObject(call))]))])
            }
        }
        for piece in pieces {
            events.append(chunk([choice(0, piece)], object: rng.chance(0.1) ? nil : "chat.completion.chunk"))
            if rng.chance(0.2) { events.append(": keep-alive\n\n") }
            if rng.chance(0.2) { events.append(chunk([choice(1, [("content", .string("OTHER CHOICE"))])])) }
            if rng.chance(0.1) {
                events.append(chunk([choice(0, [("content", .string("WRONG OBJECT"))])], object: "response.chunk"))
            }
            if rng.chance(0.1) { events.append("data: {not json\n\n") }
        }
        events.append(chunk([choice(0, [], finish: reply.finishReason)]))
        if rng.chance(0.5) { events.append(chunk([], usage: true)) }
        events.append("data: [DONE]\n\n")
        return events.joined()
    }

    @Test("a streamed reply split anywhere accumulates to exactly the reply, noise ignored")
    func streamedReplies() {
        FuzzBudget.run { rng, seed in
            let reply = Self.reply(&rng)
            let bytes = Array(Self.stream(reply, &rng).utf8)
            var accumulator = ChatReplyAccumulator()
            var index = 0
            while index < bytes.count {
                let size = rng.chance(0.3) ? 1 : rng.chance(0.5) ? rng.int(1...50) : rng.int(1...2000)
                let end = min(bytes.count, index + size)
                accumulator.consumeStream(bytes[index..<end])
                index = end
            }
            accumulator.finishStream()
            #expect(accumulator.text == reply.text, "seed \(seed)")
            #expect(accumulator.sawDone, "seed \(seed)")
            #expect(!accumulator.sawError, "seed \(seed)")
            #expect(accumulator.finishReason == reply.finishReason, "seed \(seed)")
        }
    }

    @Test("a complete reply body gives the same text as its stream; mutated bodies never crash")
    func completions() {
        FuzzBudget.run { rng, seed in
            let reply = Self.reply(&rng)
            var message: [(String, JSONValue)] = [("role", .string("assistant"))]
            let content = reply.content.joined()
            message.append(("content", content.isEmpty && rng.chance(0.5) ? .null : .string(content)))
            if !reply.refusal.isEmpty { message.append(("refusal", .string(reply.refusal.joined()))) }
            if !reply.tools.isEmpty {
                let calls = reply.tools.sorted { $0.index < $1.index }.map { tool in
                    JSONValue.object(
                        JSONObject([
                            ("id", .string(tool.id)), ("type", .string("function")),
                            (
                                "function",
                                .object(
                                    JSONObject([
                                        ("name", .string(tool.name)), ("arguments", .string(tool.arguments.joined())),
                                    ]))
                            ),
                        ]))
                }
                message.append(("tool_calls", .array(calls)))
            }
            let body = JSONValue.object(
                JSONObject([
                    ("object", .string("chat.completion")),
                    (
                        "choices",
                        .array([
                            .object(
                                JSONObject([
                                    ("index", .number("0")), ("message", .object(JSONObject(message))),
                                    ("finish_reason", .string(reply.finishReason)),
                                ]))
                        ])
                    ),
                ])
            ).serialized()
            var accumulator = ChatReplyAccumulator()
            accumulator.consumeCompletion(body)
            var sequential = reply
            sequential.tools = reply.tools.sorted { $0.index < $1.index }.enumerated().map { position, tool in
                (position, tool.id, tool.name, tool.arguments)
            }
            #expect(accumulator.text == sequential.text, "seed \(seed)")
            #expect(accumulator.finishReason == reply.finishReason, "seed \(seed)")

            var mutated = ChatReplyAccumulator()
            mutated.consumeCompletion(Gen.mutate(body, &rng))
            #expect(mutated.text.utf8.count <= ChatReplyAccumulator.maxTextBytes, "seed \(seed)")
        }
    }

    @Test("an error event marks the reply as failed; byte soup never crashes the accumulator")
    func errorsAndSoup() {
        FuzzBudget.run { rng, seed in
            var accumulator = ChatReplyAccumulator()
            let reply = Self.reply(&rng)
            var text = Self.stream(reply, &rng)
            let cut = text.index(text.startIndex, offsetBy: rng.int(0...text.count))
            text =
                String(text[..<cut])
                + "\n\ndata: {\"error\":{\"message\":\"gone\",\"code\":\"upstream_disconnected\"}}\n\n"
            accumulator.consumeStream(Array(text.utf8))
            accumulator.finishStream()
            #expect(accumulator.sawError, "seed \(seed)")

            var soup = ChatReplyAccumulator()
            let noise = Gen.mutate(Array(Self.stream(reply, &rng).utf8), &rng)
            soup.consumeStream(noise)
            soup.finishStream()
            #expect(soup.text.utf8.count <= ChatReplyAccumulator.maxTextBytes, "seed \(seed)")
        }
    }
}
