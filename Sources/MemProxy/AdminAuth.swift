import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// Guards the memory API (`/memory/v1`): with `admin.api_key` set, every request needs
/// `Authorization: Bearer <key>` (401 otherwise); without a key, only loopback clients are answered (403).
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = ProxyRequestContext

    let apiKey: String?

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if let error = AdminAuth.check(
            authorization: request.headers[.authorization],
            remote: context.remoteAddress,
            apiKey: self.apiKey
        ) {
            context.logger.notice("memory_api.denied", metadata: ["http.status": .stringConvertible(error.status.code)])
            throw error
        }
        return try await next(request, context)
    }
}

/// The memory API's access rule, as pure functions of what a request carries.
enum AdminAuth {
    /// The error to answer with, or `nil` when the request may proceed.
    ///
    /// - Parameters:
    ///   - authorization: The `Authorization` header, if any.
    ///   - remote: The client's address (`nil` when unknown: treated as not loopback).
    ///   - apiKey: `admin.api_key`, if set.
    static func check(authorization: String?, remote: SocketAddress?, apiKey: String?) -> OpenAIError? {
        guard let apiKey else {
            if isLoopback(remote) { return nil }
            return OpenAIError(
                status: .forbidden,
                message:
                    "The memory API answers only loopback clients when admin.api_key is not set. Set admin.api_key (or MEMPROXY_ADMIN_API_KEY) and send Authorization: Bearer <key>.",
                code: "forbidden",
                shouldRetry: false
            )
        }
        if let presented = bearerToken(authorization), constantTimeEquals(Array(presented.utf8), Array(apiKey.utf8)) {
            return nil
        }
        return OpenAIError(
            status: .unauthorized,
            message: "The memory API needs Authorization: Bearer <admin.api_key>; the key is missing or wrong.",
            code: "unauthorized",
            shouldRetry: false
        )
    }

    /// The token of a `Bearer` authorization (scheme case-insensitive).
    static func bearerToken(_ header: String?) -> Substring? {
        guard let header, let space = header.firstIndex(of: " "),
            header[..<space].lowercased() == "bearer"
        else { return nil }
        let token = header[space...].drop { $0 == " " }
        return token.isEmpty ? nil : token
    }

    /// Compares in time that depends only on the lengths, never on where the bytes differ.
    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference: UInt8 = a.count == b.count ? 0 : 1
        for index in 0..<max(a.count, b.count) {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0
    }

    /// Whether the client connects from the loopback network (127.0.0.0/8, ::1, or IPv4-mapped 127.x).
    static func isLoopback(_ address: SocketAddress?) -> Bool {
        switch address {
        case .v4?, .v6?:
            guard let ip = address?.ipAddress?.lowercased() else { return false }
            let v4 = ip.hasPrefix("::ffff:") ? String(ip.dropFirst(7)) : ip
            return ip == "::1" || isLoopbackHost(v4)
        default:
            return false
        }
    }

    /// Whether a configured listen host only accepts loopback clients (for the start-up warning).
    static func isLoopbackHost(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
