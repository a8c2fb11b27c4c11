public import Hummingbird
import Logging
public import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Per-request context: Hummingbird's core storage plus what memproxy needs to know about the connection.
public struct ProxyRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client's address, for loopback-only endpoints.
    public let remoteAddress: SocketAddress?
    /// memproxy's own id for this request (also sent back as `X-Memproxy-Request-Id`).
    public var requestID: String
    /// Filled in by the forwarder, read by the access log.
    let timing = RequestTiming()

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
        self.requestID = RequestIDGenerator.next()
        self.logger[metadataKey: "request.id"] = .string(self.requestID)
    }
}

/// Fresh, unguessable request ids: `req_` + 24 hex characters (96 random bits).
///
/// Random bytes are drawn from the system generator 4 KiB at a time: one `getrandom` per ~340 ids instead of
/// two per request.
enum RequestIDGenerator {
    private static let pool = Mutex<(bytes: [UInt8], used: Int)>(([], 0))
    private static let batch = 4096
    private static let hexDigits = Array("0123456789abcdef".utf8)

    private static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let descriptor = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        var filled = 0
        if descriptor >= 0 {
            defer { close(descriptor) }
            filled = bytes.withUnsafeMutableBytes { buffer in read(descriptor, buffer.baseAddress, count) }
        }
        if filled != count {
            var generator = SystemRandomNumberGenerator()
            for index in bytes.indices { bytes[index] = generator.next() }
        }
        return bytes
    }

    static func next() -> String {
        var random = [UInt8](repeating: 0, count: 12)
        Self.pool.withLock { pool in
            if pool.used + 12 > pool.bytes.count {
                pool.bytes = Self.randomBytes(Self.batch)
                pool.used = 0
            }
            random.withUnsafeMutableBufferPointer { target in
                for offset in 0..<12 { target[offset] = pool.bytes[pool.used + offset] }
            }
            pool.used += 12
        }
        var text: [UInt8] = Array("req_".utf8)
        text.reserveCapacity(28)
        for byte in random {
            text.append(Self.hexDigits[Int(byte >> 4)])
            text.append(Self.hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
