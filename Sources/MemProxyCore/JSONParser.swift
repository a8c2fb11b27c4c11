/// ASCII bytes the parser and serializer compare against.
enum ASCII {
    static let tab: UInt8 = 0x09
    static let lineFeed: UInt8 = 0x0A
    static let carriageReturn: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22
    static let plus: UInt8 = 0x2B
    static let comma: UInt8 = 0x2C
    static let minus: UInt8 = 0x2D
    static let dot: UInt8 = 0x2E
    static let slash: UInt8 = 0x2F
    static let zero: UInt8 = 0x30
    static let nine: UInt8 = 0x39
    static let colon: UInt8 = 0x3A
    static let lessThan: UInt8 = 0x3C
    static let greaterThan: UInt8 = 0x3E
    static let upperE: UInt8 = 0x45
    static let openBracket: UInt8 = 0x5B
    static let backslash: UInt8 = 0x5C
    static let closeBracket: UInt8 = 0x5D
    static let underscore: UInt8 = 0x5F
    static let lowerE: UInt8 = 0x65
    static let openBrace: UInt8 = 0x7B
    static let closeBrace: UInt8 = 0x7D
}

/// An iterative (non-recursive) RFC 8259 parser over a contiguous buffer.
///
/// Containers being built live on an explicit heap-allocated stack, so the call stack depth is constant no
/// matter how deeply the input nests.
struct JSONParser {
    private struct Frame {
        var isObject: Bool
        var elements: [JSONValue] = []
        var pairs: [(String, JSONValue)] = []
        var pendingKey: String = ""
    }

    private let buffer: UnsafeBufferPointer<UInt8>
    private let maxDepth: Int
    private var position = 0

    init(buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.buffer = buffer
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        var stack: [Frame] = []
        parseValue: while true {
            skipWhitespace()
            let byte = try peekByte()
            var value: JSONValue
            switch byte {
            case ASCII.openBrace, ASCII.openBracket:
                guard stack.count < maxDepth else {
                    throw JSONParseError("nesting deeper than \(maxDepth) levels", at: position)
                }
                position += 1
                skipWhitespace()
                if byte == ASCII.openBrace {
                    if try peekByte() == ASCII.closeBrace {
                        position += 1
                        value = .object(JSONObject())
                    } else {
                        let key = try parseKey()
                        stack.append(Frame(isObject: true, pendingKey: key))
                        continue parseValue
                    }
                } else {
                    if try peekByte() == ASCII.closeBracket {
                        position += 1
                        value = .array([])
                    } else {
                        stack.append(Frame(isObject: false))
                        continue parseValue
                    }
                }
            case ASCII.quote:
                value = .string(try parseString())
            case UInt8(ascii: "t"):
                try expectLiteral("true")
                value = .bool(true)
            case UInt8(ascii: "f"):
                try expectLiteral("false")
                value = .bool(false)
            case UInt8(ascii: "n"):
                try expectLiteral("null")
                value = .null
            case ASCII.minus, ASCII.zero...ASCII.nine:
                value = .number(try parseNumber())
            default:
                throw unexpected(byte)
            }

            // Attach the finished value to its container; close containers as long as they end here.
            while true {
                skipWhitespace()
                guard !stack.isEmpty else {
                    if position < buffer.count {
                        throw unexpected(buffer[position], context: " after the JSON value")
                    }
                    return value
                }
                let top = stack.count - 1
                let next = try peekByte()
                if stack[top].isObject {
                    stack[top].pairs.append((stack[top].pendingKey, value))
                    if next == ASCII.comma {
                        position += 1
                        skipWhitespace()
                        stack[top].pendingKey = try parseKey()
                        continue parseValue
                    }
                    guard next == ASCII.closeBrace else { throw unexpected(next, context: ", expected ',' or '}'") }
                    position += 1
                    value = .object(JSONObject(stack.removeLast().pairs))
                } else {
                    stack[top].elements.append(value)
                    if next == ASCII.comma {
                        position += 1
                        continue parseValue
                    }
                    guard next == ASCII.closeBracket else {
                        throw unexpected(next, context: ", expected ',' or ']'")
                    }
                    position += 1
                    value = .array(stack.removeLast().elements)
                }
            }
        }
    }

    // MARK: - Tokens

    private mutating func skipWhitespace() {
        while position < buffer.count {
            switch buffer[position] {
            case ASCII.space, ASCII.tab, ASCII.lineFeed, ASCII.carriageReturn:
                position += 1
            default:
                return
            }
        }
    }

    private func peekByte() throws(JSONParseError) -> UInt8 {
        guard position < buffer.count else { throw JSONParseError("unexpected end of input", at: position) }
        return buffer[position]
    }

    private func unexpected(_ byte: UInt8, context: String = "") -> JSONParseError {
        JSONParseError("unexpected \(describe(byte))\(context)", at: position)
    }

    private func describe(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? "character '\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(hex2(byte))"
    }

    /// Parses `"key"` followed by optional whitespace, `:` and optional whitespace.
    private mutating func parseKey() throws(JSONParseError) -> String {
        let byte = try peekByte()
        guard byte == ASCII.quote else { throw unexpected(byte, context: ", expected a string key") }
        let key = try parseString()
        skipWhitespace()
        let colon = try peekByte()
        guard colon == ASCII.colon else { throw unexpected(colon, context: ", expected ':'") }
        position += 1
        return key
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        var index = 0
        while index < literal.utf8CodeUnitCount {
            let byte = try peekByte()
            guard byte == literal.utf8Start[index] else { throw unexpected(byte) }
            position += 1
            index += 1
        }
    }

    private mutating func parseNumber() throws(JSONParseError) -> String {
        let start = position
        if buffer[position] == ASCII.minus { position += 1 }
        let first = try peekByte()
        if first == ASCII.zero {
            position += 1
            if position < buffer.count, isDigit(buffer[position]) {
                throw JSONParseError("leading zeros are not allowed in numbers", at: position)
            }
        } else if isDigit(first) {
            skipDigits()
        } else {
            throw unexpected(first, context: ", expected a digit")
        }
        if position < buffer.count, buffer[position] == ASCII.dot {
            position += 1
            try requireDigits()
        }
        if position < buffer.count, buffer[position] == ASCII.lowerE || buffer[position] == ASCII.upperE {
            position += 1
            if position < buffer.count, buffer[position] == ASCII.plus || buffer[position] == ASCII.minus {
                position += 1
            }
            try requireDigits()
        }
        return String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<position]), as: UTF8.self)
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= ASCII.zero && byte <= ASCII.nine }

    private mutating func skipDigits() {
        while position < buffer.count, isDigit(buffer[position]) { position += 1 }
    }

    private mutating func requireDigits() throws(JSONParseError) {
        let byte = try peekByte()
        guard isDigit(byte) else { throw unexpected(byte, context: ", expected a digit") }
        skipDigits()
    }

    // MARK: - Strings

    /// Parses a string starting at the opening quote. Runs of plain bytes are copied in bulk; only escapes are
    /// decoded one by one.
    private mutating func parseString() throws(JSONParseError) -> String {
        position += 1  // opening quote
        let start = position
        var runStart = position
        var unescaped: [UInt8] = []
        var hasEscapes = false
        while true {
            // Fast path: printable ASCII other than '"' and '\'.
            while position < buffer.count {
                let byte = buffer[position]
                guard byte >= ASCII.space, byte < 0x80, byte != ASCII.quote, byte != ASCII.backslash else { break }
                position += 1
            }
            let byte = try peekByte()
            switch byte {
            case ASCII.quote:
                let run = UnsafeBufferPointer(rebasing: buffer[runStart..<position])
                position += 1
                if !hasEscapes {
                    return String(
                        decoding: UnsafeBufferPointer(rebasing: buffer[start..<(position - 1)]), as: UTF8.self)
                }
                unescaped.append(contentsOf: run)
                return String(decoding: unescaped, as: UTF8.self)
            case ASCII.backslash:
                if !hasEscapes {
                    hasEscapes = true
                    unescaped.reserveCapacity(position - start + 16)
                }
                unescaped.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[runStart..<position]))
                try parseEscape(into: &unescaped)
                runStart = position
            case 0x80...:
                try validateUTF8Sequence()
            default:
                throw JSONParseError("unescaped control character 0x\(hex2(byte)) in string", at: position)
            }
        }
    }

    /// Validates one multi-byte UTF-8 sequence at `position` (Unicode Table 3-7) and steps over it.
    private mutating func validateUTF8Sequence() throws(JSONParseError) {
        let lead = buffer[position]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            high = 0x9F
        case 0xF0:
            length = 4
            low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            high = 0x8F
        default: throw JSONParseError("invalid UTF-8 byte 0x\(hex2(lead))", at: position)
        }
        for offset in 1..<length {
            let index = position + offset
            guard index < buffer.count else { throw JSONParseError("truncated UTF-8 sequence", at: index) }
            let byte = buffer[index]
            let (min, max) = offset == 1 ? (low, high) : (UInt8(0x80), UInt8(0xBF))
            guard byte >= min, byte <= max else {
                throw JSONParseError("invalid UTF-8 byte 0x\(hex2(byte))", at: index)
            }
        }
        position += length
    }

    private mutating func parseEscape(into output: inout [UInt8]) throws(JSONParseError) {
        let escapeStart = position
        position += 1  // backslash
        let byte = try peekByte()
        position += 1
        switch byte {
        case ASCII.quote, ASCII.backslash, ASCII.slash: output.append(byte)
        case UInt8(ascii: "b"): output.append(0x08)
        case UInt8(ascii: "f"): output.append(0x0C)
        case UInt8(ascii: "n"): output.append(ASCII.lineFeed)
        case UInt8(ascii: "r"): output.append(ASCII.carriageReturn)
        case UInt8(ascii: "t"): output.append(ASCII.tab)
        case UInt8(ascii: "u"):
            let unit = try parseHex4()
            var scalarValue = UInt32(unit)
            switch unit {
            case 0xD800...0xDBFF:
                guard position + 1 < buffer.count, buffer[position] == ASCII.backslash,
                    buffer[position + 1] == UInt8(ascii: "u")
                else {
                    throw JSONParseError("unpaired surrogate \\u\(hex4(unit))", at: escapeStart)
                }
                position += 2
                let low = try parseHex4()
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw JSONParseError("unpaired surrogate \\u\(hex4(unit))", at: escapeStart)
                }
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
            case 0xDC00...0xDFFF:
                throw JSONParseError("unpaired surrogate \\u\(hex4(unit))", at: escapeStart)
            default:
                break
            }
            // Every value here is a valid scalar: surrogates were combined or rejected above.
            if let scalar = Unicode.Scalar(scalarValue) {
                UTF8.encode(scalar) { output.append($0) }
            }
        default:
            throw JSONParseError("invalid escape: backslash followed by \(describe(byte)) in string", at: escapeStart)
        }
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0..<4 {
            let byte = try peekByte()
            let digit: UInt8
            switch byte {
            case ASCII.zero...ASCII.nine: digit = byte - ASCII.zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw unexpected(byte, context: ", expected a hex digit")
            }
            value = value << 4 | UInt16(digit)
            position += 1
        }
        return value
    }
}

private let hexDigits: [Character] = Array("0123456789ABCDEF")

private func hex2(_ byte: UInt8) -> String {
    String([hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
}

private func hex4(_ value: UInt16) -> String {
    hex2(UInt8(value >> 8)) + hex2(UInt8(value & 0xFF))
}
