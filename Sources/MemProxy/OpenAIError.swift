public import HTTPTypes
public import Hummingbird
public import MemProxyCore
import NIOCore

/// An error memproxy answers by itself, rendered in OpenAI's shape
/// `{"error":{"message":…,"type":…,"param":…,"code":…}}`, or in the shape of the route it happened on
/// (``shape``: Anthropic's on `/v1/messages`).
public struct OpenAIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var param: String?
    public var code: String
    /// Adds `x-should-retry: false` where retrying cannot help.
    public var shouldRetry: Bool?
    /// How the error is rendered (the route's API decides).
    public var shape = ErrorShape.openAI

    public init(
        status: HTTPResponse.Status,
        message: String,
        type: String = "invalid_request_error",
        param: String? = nil,
        code: String,
        shouldRetry: Bool? = nil
    ) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.shouldRetry = shouldRetry
    }

    /// The error, independent of its wire shape.
    public var wireError: WireError {
        WireError(status: Int(self.status.code), message: self.message, type: self.type, param: self.param, code: self.code)
    }

    /// The JSON body in ``shape``.
    public var json: String { self.shape.body(self.wireError) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if let shouldRetry = self.shouldRetry {
            headers[HTTPField.Name("x-should-retry")!] = shouldRetry ? "true" : "false"
        }
        return Response(
            status: self.status,
            headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(string: self.json))
        )
    }
}

extension OpenAIError {
    static func notFound(_ path: String) -> OpenAIError {
        OpenAIError(
            status: .notFound,
            message: "memproxy does not serve \(path). Proxied API paths start with /v1/; memproxy's own endpoints are /healthz, /metrics and the memory API under /memory/v1/.",
            code: "not_found",
            shouldRetry: false
        )
    }

    static func requestTooLarge(limit: Int) -> OpenAIError {
        OpenAIError(
            status: .contentTooLarge,
            message: "Request body is larger than server.max_body_bytes (\(limit) bytes). Send a smaller request or raise the limit in proxy.conf.",
            code: "request_too_large",
            shouldRetry: false
        )
    }

    static func upstreamUnreachable(_ detail: String) -> OpenAIError {
        OpenAIError(
            status: .badGateway,
            message: "memproxy could not connect to the upstream API (\(detail)). Check upstream.url and that the upstream is running.",
            type: "server_error",
            code: "upstream_unreachable"
        )
    }

    static func upstreamTimeout(_ detail: String) -> OpenAIError {
        OpenAIError(
            status: .gatewayTimeout,
            message: "The upstream API did not answer in time (\(detail)). Retry later or raise upstream.timeout_seconds.",
            type: "server_error",
            code: "upstream_timeout"
        )
    }

    static func upstreamDisconnected(_ detail: String) -> OpenAIError {
        OpenAIError(
            status: .badGateway,
            message: "The upstream API closed the connection before answering (\(detail)). Retry the request.",
            type: "server_error",
            code: "upstream_disconnected"
        )
    }

    static func upstreamFailed(_ detail: String) -> OpenAIError {
        OpenAIError(
            status: .badGateway,
            message: "The upstream request failed (\(detail)).",
            type: "server_error",
            code: "upstream_error"
        )
    }
}

func jsonEscape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}
