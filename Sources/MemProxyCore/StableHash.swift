/// Deterministic, platform-independent hashing.
///
/// Swift's `Hasher` is randomly seeded per process, so anything persisted (session tokens in the
/// full-text index, content hashes) must use a fixed function instead.
public enum StableHash {
    /// The 64-bit FNV-1a hash of `bytes`, as 16 lowercase hexadecimal characters.
    ///
    /// - Parameter bytes: The bytes to hash, e.g. `string.utf8`.
    /// - Returns: Exactly 16 characters in `[0-9a-f]`.
    @inlinable
    public static func fnv1a64Hex(_ bytes: some Sequence<UInt8>) -> String {
        hex(fnv1a64(bytes))
    }

    /// `value` as 16 lowercase hexadecimal characters.
    public static func hex(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { buffer in
            for index in 0..<16 {
                let digit = UInt8((value >> UInt64(60 - index * 4)) & 0xF)
                buffer[index] = digit < 10 ? 0x30 + digit : 0x57 + digit
            }
            return 16
        }
    }

    /// The 64-bit FNV-1a hash of `bytes`.
    ///
    /// - Parameter bytes: The bytes to hash.
    /// - Returns: The hash value.
    @inlinable
    public static func fnv1a64(_ bytes: some Sequence<UInt8>) -> UInt64 {
        // Contiguous bytes (a native string's UTF-8, an array) are hashed without the generic iterator, which costs
        // more than the hash itself when the call is not specialized.
        if let hash = bytes.withContiguousStorageIfAvailable({ fnv1a64(buffer: UnsafeRawBufferPointer($0)) }) {
            return hash
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// The 64-bit FNV-1a hash of the bytes in `buffer`.
    @usableFromInline
    static func fnv1a64(buffer: UnsafeRawBufferPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in buffer {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }
}
