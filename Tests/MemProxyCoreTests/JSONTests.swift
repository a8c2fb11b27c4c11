import Testing

@testable import MemProxyCore

@Suite struct JSONRoundTripTests {
    @Test(arguments: [
        #"{"z":1,"a":2,"m":{"y":[1,2,{"b":null,"a":true}],"x":false}}"#,
        #"[1.0,1e5,-0,0.5E-10,-12.5e+3,123456789012345678901234567890,0]"#,
        #"{"text":"héllo wörld 日本語 😀","slash":"a/b"}"#,
        #"[]"#, #"{}"#, #"[[],{},[[]]]"#, #""plain""#, #"null"#, #"true"#, #"-1"#,
    ])
    func compactInputWithoutEscapesIsByteIdentical(_ input: String) throws {
        let value = try parse(input)
        #expect(string(value.serialized()) == input)
    }

    @Test func keyOrderAndUnknownFieldsSurvive() throws {
        let value = try parse(#"{"b":1,"a":2,"future_field":{"q":[3]}}"#)
        #expect(value.objectValue?.keys == ["b", "a", "future_field"])
    }

    @Test func numbersKeepTheirLiteralText() throws {
        let value = try parse(#"[1.0, 1e5, -0, 1E+2]"#)
        #expect(value == .array([.number("1.0"), .number("1e5"), .number("-0"), .number("1E+2")]))
        #expect(string(value.serialized()) == "[1.0,1e5,-0,1E+2]")
    }

    @Test func escapesAreDecodedAndReencoded() throws {
        let input = #"{"s":"q\"b\\s\/n\nr\rt\tb\bf\f\u0000\u001F\u00e9\uD83D\uDE00"}"#
        let value = try parse(input)
        #expect(value.objectValue?["s"] == .string("q\"b\\s/n\nr\rt\tb\u{8}f\u{C}\u{0}\u{1F}é😀"))
        #expect(string(value.serialized()) == #"{"s":"q\"b\\s/n\nr\rt\tb\bf\f\u0000\u001fé😀"}"#)
    }

    @Test func whitespaceIsDroppedOnSerialization() throws {
        let value = try parse(" {\n\t\"a\" : [ 1 , 2 ] ,\r\n \"b\" : \"x\" } ")
        #expect(string(value.serialized()) == #"{"a":[1,2],"b":"x"}"#)
    }

    @Test(arguments: [
        #"{"a":"\u0000 nul","b":"emoji \uD83D\uDE00 and \u2028","c":[1.5e-3,{"d":"\"\\\/"}]}"#,
        "\"\u{7F} del and \u{10FFFF} max\"",
        #"  [ "x" , { "k" : -0.0 } ]  "#,
    ])
    func parseSerializeParseIsStable(_ input: String) throws {
        let first = try parse(input)
        let second = try JSON.parse(first.serialized())
        #expect(first == second)
        #expect(second.serialized() == first.serialized())
    }

    @Test func controlCharactersAreEscapedOnOutput() {
        let value = JSONValue.string("a\u{1}b\u{1B}c\"")
        #expect(string(value.serialized()) == #""a\u0001b\u001bc\"""#)
    }

    @Test func parsesFromNonContiguousCollections() throws {
        let input = bytes(#"{"a":[1,"two"]}"#)
        let value = try JSON.parse(input.lazy.map { $0 })
        #expect(value.objectValue?["a"] == .array([.number("1"), .string("two")]))
    }
}

@Suite struct JSONObjectTests {
    @Test func duplicateKeysKeepLastValueAtFirstPosition() throws {
        let value = try parse(#"{"a":1,"b":2,"a":3}"#)
        #expect(string(value.serialized()) == #"{"a":3,"b":2}"#)
        let many = (0..<40).map { "\"k\($0 % 20)\":\($0)" }.joined(separator: ",")
        let big = try parse("{\(many)}").objectValue
        #expect(big?.count == 20)
        #expect(big?.keys.first == "k0")
        #expect(big?["k0"] == .number("20"))
    }

    @Test func subscriptReplacesInPlaceAppendsAndRemoves() {
        var object = JSONObject([("a", .number("1")), ("b", .number("2"))])
        object["a"] = .string("x")
        #expect(object.keys == ["a", "b"])
        object["c"] = .null
        #expect(object.keys == ["a", "b", "c"])
        object["a"] = nil
        #expect(object.keys == ["b", "c"])
        object["missing"] = nil
        #expect(object.count == 2)
        #expect(object["c"] == .null)
        #expect(object["a"] == nil)
        #expect(object.map(\.key) == ["b", "c"])
    }

    @Test func equalityIsOrderSensitive() {
        let ab = JSONObject([("a", .null), ("b", .null)])
        let ba = JSONObject([("b", .null), ("a", .null)])
        #expect(ab != ba)
        #expect(ab == JSONObject([("a", .null), ("b", .null)]))
    }

    @Test func accessors() {
        #expect(JSONValue.string("s").stringValue == "s")
        #expect(JSONValue.bool(true).boolValue == true)
        #expect(JSONValue.array([.null]).arrayValue == [.null])
        #expect(JSONValue.object(JSONObject()).objectValue == JSONObject())
        #expect(JSONValue.null.stringValue == nil)
        #expect(JSONValue.number("1").boolValue == nil)
    }
}

@Suite struct JSONRejectionTests {
    @Test(arguments: [
        ("", "unexpected end of input at byte 0"),
        ("[1,2", "unexpected end of input at byte 4"),
        (#"{"a":"#, "unexpected end of input at byte 5"),
        (#""abc"#, "unexpected end of input at byte 4"),
        ("[1] x", "unexpected character 'x' after the JSON value at byte 4"),
        ("{} {}", "unexpected character '{' after the JSON value at byte 3"),
        ("01", "leading zeros are not allowed in numbers at byte 1"),
        ("-01", "leading zeros are not allowed in numbers at byte 2"),
        ("[1,]", "unexpected character ']' at byte 3"),
        (#"{"a":1,}"#, "unexpected character '}', expected a string key at byte 7"),
        ("{a:1}", "unexpected character 'a', expected a string key at byte 1"),
        ("1.", "unexpected end of input at byte 2"),
        ("1.e5", "unexpected character 'e', expected a digit at byte 2"),
        ("-", "unexpected end of input at byte 1"),
        ("+1", "unexpected character '+' at byte 0"),
        (".5", "unexpected character '.' at byte 0"),
        ("tru", "unexpected end of input at byte 3"),
        ("nul1", "unexpected character '1' at byte 3"),
        ("NaN", "unexpected character 'N' at byte 0"),
        ("\"a\nb\"", "unescaped control character 0x0A in string at byte 2"),
        (#""\x""#, "invalid escape: backslash followed by character 'x' in string at byte 1"),
        (#""\u12G4""#, "unexpected character 'G', expected a hex digit at byte 5"),
        (#""\uD83D""#, #"unpaired surrogate \uD83D at byte 1"#),
        (#""\uD83Dx""#, #"unpaired surrogate \uD83D at byte 1"#),
        (#""\uD83D\u0041""#, #"unpaired surrogate \uD83D at byte 1"#),
        (#""\uDE00""#, #"unpaired surrogate \uDE00 at byte 1"#),
        ("[1 2]", "unexpected character '2', expected ',' or ']' at byte 3"),
        (#"{"a" 1}"#, "unexpected character '1', expected ':' at byte 5"),
        ("\u{FEFF}{}", "unexpected byte 0xEF at byte 0"),
    ])
    func rejectsWithReadableMessage(_ input: String, _ message: String) {
        let error = parseError(bytes(input))
        #expect(error?.message == message)
        #expect(error?.description == message)
    }

    @Test(
        arguments: [
            ([0x22, 0xFF, 0x22], "invalid UTF-8 byte 0xFF at byte 1"),
            ([0x22, 0xC0, 0xAF, 0x22], "invalid UTF-8 byte 0xC0 at byte 1"),  // overlong '/'
            ([0x22, 0xE0, 0x80, 0xAF, 0x22], "invalid UTF-8 byte 0x80 at byte 2"),  // overlong
            ([0x22, 0xED, 0xA0, 0x80, 0x22], "invalid UTF-8 byte 0xA0 at byte 2"),  // encoded surrogate
            ([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], "invalid UTF-8 byte 0x90 at byte 2"),  // > U+10FFFF
            ([0x22, 0x80, 0x22], "invalid UTF-8 byte 0x80 at byte 1"),  // lone continuation
            ([0x22, 0xE2, 0x82, 0x22], "invalid UTF-8 byte 0x22 at byte 3"),  // truncated sequence
            ([0x22, 0xF0, 0x9F], "truncated UTF-8 sequence at byte 3"),
            ([0x5B, 0xC3, 0xA9, 0x5D], "unexpected byte 0xC3 at byte 1"),  // non-ASCII outside a string
        ] as [([UInt8], String)])
    func rejectsInvalidUTF8(_ input: [UInt8], _ message: String) {
        #expect(parseError(input)?.message == message)
    }

    @Test func validUTF8OfEveryLengthIsAccepted() throws {
        let text = "a é € 😀 \u{10FFFF} \u{E000}"
        #expect(try parse("\"\(text)\"") == .string(text))
    }

    @Test func deepNestingThrowsWithoutRecursion() {
        let arrays = [UInt8](repeating: ASCII.openBracket, count: 100_000)
        let error = parseError(arrays)
        #expect(error?.message == "nesting deeper than 128 levels at byte 128")
        let objects = bytes(String(repeating: #"{"a":"#, count: 100_000))
        #expect(parseError(objects)?.offset == 5 * 128)
    }

    @Test func depthLimitIsInclusive() {
        let atLimit = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        #expect(parseError(bytes(atLimit)) == nil)
        let overLimit = "[" + atLimit + "]"
        #expect(parseError(bytes(overLimit))?.offset == 128)
        #expect(parseError(bytes("[[1]]"), maxDepth: 1)?.message == "nesting deeper than 1 levels at byte 1")
        #expect(parseError(bytes("7"), maxDepth: 0) == nil)
    }
}
