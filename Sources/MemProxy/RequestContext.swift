public import Hummingbird
import Logging
public import NIOCore

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

/// Fresh, unguessable request ids: `req_` + 24 hex characters.
enum RequestIDGenerator {
    static func next() -> String {
        var generator = SystemRandomNumberGenerator()
        let a = generator.next() as UInt64
        let b = generator.next() as UInt32
        return "req_" + hex(a, width: 16) + hex(UInt64(b), width: 8)
    }

    private static func hex(_ value: UInt64, width: Int) -> String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }
}
