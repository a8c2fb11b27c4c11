/// Deterministic, platform-independent hashing.
///
/// Swift's `Hasher` is randomly seeded per process, so anything persisted (session tokens in the
/// full-text index, content hashes) must use a fixed function instead.
public enum StableHash {
    /// The 64-bit FNV-1a hash of `bytes`, as 16 lowercase hexadecimal characters.
    ///
    /// - Parameter bytes: The bytes to hash, e.g. `string.utf8`.
    /// - Returns: Exactly 16 characters in `[0-9a-f]`.
    public static func fnv1a64Hex(_ bytes: some Sequence<UInt8>) -> String {
        let value = fnv1a64(bytes)
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 16)
        for index in 0..<16 {
            let shift = UInt64(60 - index * 4)
            out[index] = digits[Int((value >> shift) & 0xF)]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The 64-bit FNV-1a hash of `bytes`.
    ///
    /// - Parameter bytes: The bytes to hash.
    /// - Returns: The hash value.
    public static func fnv1a64(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }
}
