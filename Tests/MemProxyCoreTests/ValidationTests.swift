import Testing

@testable import MemProxyCore

@Suite struct SessionIDValidatorTests {
    @Test func lengthLimits() {
        #expect(!SessionIDValidator.isValid(""))
        #expect(SessionIDValidator.isValid("u"))
        #expect(SessionIDValidator.isValid(String(repeating: "a", count: 200)))
        #expect(!SessionIDValidator.isValid(String(repeating: "a", count: 201)))
        // Characters, not bytes: 200 emoji (800 bytes) are fine, 201 are not.
        #expect(SessionIDValidator.isValid(String(repeating: "😀", count: 200)))
        #expect(!SessionIDValidator.isValid(String(repeating: "👨‍👩‍👧", count: 201)))
    }

    @Test(arguments: ["a\u{0}b", "\u{0}", "tab\there", "line\nbreak", "cr\r\n", "del\u{7F}", "c1\u{85}"])
    func controlCharactersAreRejected(_ id: String) {
        #expect(!SessionIDValidator.isValid(id))
    }

    @Test(arguments: ["u42", "user@example.com", "😀 session", "日本語-セッション", " spaced ", "a/b:c"])
    func ordinaryIDsAreAccepted(_ id: String) {
        #expect(SessionIDValidator.isValid(id))
    }
}

@Suite struct MemoryModeTests {
    @Test func parsesHeaderValues() {
        #expect(MemoryMode(header: "on") == .on)
        #expect(MemoryMode(header: " OFF\t") == .off)
        #expect(MemoryMode(header: "Read") == .read)
        #expect(MemoryMode(header: "WRITE\r\n") == .write)
        #expect(MemoryMode(header: "") == nil)
        #expect(MemoryMode(header: "yes") == nil)
        #expect(MemoryMode(header: "read write") == nil)
    }

    @Test func capabilities() {
        #expect(MemoryMode.on.reads && MemoryMode.on.writes)
        #expect(!MemoryMode.off.reads && !MemoryMode.off.writes)
        #expect(MemoryMode.read.reads && !MemoryMode.read.writes)
        #expect(!MemoryMode.write.reads && MemoryMode.write.writes)
        #expect([MemoryMode.on, .off, .read, .write].map(\.name) == ["on", "off", "read", "write"])
        #expect(MemoryMode.read.description == "read")
    }
}
