extension JSONValue {
    /// Serializes the value as compact JSON (no insignificant whitespace), keeping object key order.
    ///
    /// Numbers are written as their stored literal text. Strings escape `"` and `\`, use the short escapes
    /// `\b \f \n \r \t`, write other control characters as `\u00XX` (lowercase hex), and emit everything
    /// else, including `/` and non-ASCII text, as raw UTF-8. For compact input without escapes,
    /// `JSON.parse(x).serialized()` is byte-identical to `x`.
    /// - Returns: The UTF-8 encoded JSON text.
    public func serialized() -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(256)
        write(into: &output)
        return output
    }

    func write(into output: inout [UInt8]) {
        switch self {
        case .null:
            output.append(contentsOf: "null".utf8)
        case .bool(let value):
            output.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let text):
            output.append(contentsOf: text.utf8)
        case .string(let text):
            JSONValue.writeString(text, into: &output)
        case .array(let elements):
            output.append(ASCII.openBracket)
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(ASCII.comma) }
                element.write(into: &output)
            }
            output.append(ASCII.closeBracket)
        case .object(let object):
            output.append(ASCII.openBrace)
            for (index, entry) in object.entries.enumerated() {
                if index > 0 { output.append(ASCII.comma) }
                JSONValue.writeString(entry.key, into: &output)
                output.append(ASCII.colon)
                entry.value.write(into: &output)
            }
            output.append(ASCII.closeBrace)
        }
    }

    static func writeString(_ text: String, into output: inout [UInt8]) {
        output.append(ASCII.quote)
        var text = text
        text.withUTF8 { bytes in
            var runStart = 0
            for index in bytes.indices {
                let byte = bytes[index]
                guard byte < ASCII.space || byte == ASCII.quote || byte == ASCII.backslash else { continue }
                output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                runStart = index + 1
                output.append(ASCII.backslash)
                switch byte {
                case ASCII.quote, ASCII.backslash: output.append(byte)
                case 0x08: output.append(UInt8(ascii: "b"))
                case 0x0C: output.append(UInt8(ascii: "f"))
                case ASCII.lineFeed: output.append(UInt8(ascii: "n"))
                case ASCII.carriageReturn: output.append(UInt8(ascii: "r"))
                case ASCII.tab: output.append(UInt8(ascii: "t"))
                default:
                    output.append(contentsOf: "u00".utf8)
                    output.append(lowerHex[Int(byte >> 4)])
                    output.append(lowerHex[Int(byte & 0xF)])
                }
            }
            output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count]))
        }
        output.append(ASCII.quote)
    }
}

private let lowerHex: [UInt8] = Array("0123456789abcdef".utf8)
