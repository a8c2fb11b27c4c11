import Foundation
import HTTPTypes
import Hummingbird
import MemProxyCore
import NIOCore

/// The HTTP face of ``MemoryAPI`` under `/memory/v1`: JSON in and out, errors in OpenAI's shape.
/// Handlers only translate between HTTP and ``MemoryAPI``.
extension MemoryAPI {
    /// Registers the memory API routes behind ``AdminAuthMiddleware``.
    ///
    /// - Parameters:
    ///   - router: The application's router.
    ///   - apiKey: `admin.api_key`.
    ///   - maxBodyBytes: The largest request body (imports included).
    func addRoutes(to router: Router<ProxyRequestContext>, apiKey: String?, maxBodyBytes: Int) {
        let api = self
        let group = router.group("/memory/v1").add(middleware: AdminAuthMiddleware(apiKey: apiKey))
        group.get("sessions") { request, _ in
            let page = try await api.sessions(
                limit: try MemoryInput.int(query: request.uri.queryParameters.get("limit"), "limit"),
                cursor: request.uri.queryParameters.get("cursor")
            )
            return Self.json(.ok, page.jsonValue(\.jsonValue))
        }
        group.delete("sessions/{session}") { _, context in
            let deleted = try await api.forget(session: try Self.session(context))
            return Self.json(.ok, .object(JSONObject([("deleted", .integer(deleted))])))
        }
        group.post("sessions/{session}/memories") { request, context in
            let body = try await Self.body(
                request, maxBodyBytes: maxBodyBytes, allowed: ["content", "type", "metadata"])
            guard let content = try MemoryInput.string(body, "content") else {
                throw MemoryInput.invalid("content is required.", param: "content")
            }
            let memory = try await api.add(
                session: try Self.session(context),
                content: content,
                type: try MemoryInput.string(body, "type"),
                metadataJSON: try MemoryInput.metadata(body["metadata"].flatMap { $0 == .null ? nil : $0 })
            )
            return Self.json(.created, memory.jsonValue)
        }
        group.get("sessions/{session}/memories") { request, context in
            let query = request.uri.queryParameters
            let page = try await api.list(
                session: try Self.session(context),
                type: query.get("type"),
                limit: try MemoryInput.int(query: query.get("limit"), "limit"),
                cursor: query.get("cursor")
            )
            return Self.json(.ok, page.jsonValue(\.jsonValue))
        }
        group.get("sessions/{session}/memories/{id}") { _, context in
            let memory = try await api.get(session: try Self.session(context), id: try Self.memoryID(context))
            return Self.json(.ok, memory.jsonValue)
        }
        group.patch("sessions/{session}/memories/{id}") { request, context in
            let body = try await Self.body(
                request, maxBodyBytes: maxBodyBytes, allowed: ["content", "type", "metadata"])
            if body["metadata"] == .null {
                throw MemoryInput.invalid("metadata must be a JSON object; send {} to clear it.", param: "metadata")
            }
            let memory = try await api.edit(
                session: try Self.session(context),
                id: try Self.memoryID(context),
                content: try MemoryInput.string(body, "content"),
                type: try MemoryInput.string(body, "type"),
                metadataJSON: try MemoryInput.metadata(body["metadata"])
            )
            return Self.json(.ok, memory.jsonValue)
        }
        group.delete("sessions/{session}/memories/{id}") { _, context in
            try await api.delete(session: try Self.session(context), id: try Self.memoryID(context))
            return Response(status: .noContent)
        }
        group.post("sessions/{session}/recall") { request, context in
            let body = try await Self.body(
                request, maxBodyBytes: maxBodyBytes, allowed: ["query", "top_k", "explain"])
            guard let query = try MemoryInput.string(body, "query") else {
                throw MemoryInput.invalid("query is required.", param: "query")
            }
            let result = try await api.recall(
                session: try Self.session(context),
                query: query,
                topK: try MemoryInput.int(body, "top_k"),
                explain: try MemoryInput.bool(body, "explain") ?? false
            )
            return Self.json(.ok, result.jsonValue)
        }
        group.get("sessions/{session}/injections") { request, context in
            let query = request.uri.queryParameters
            let records = try await api.injections(
                session: try Self.session(context),
                requestID: query.get("request_id"),
                limit: try MemoryInput.int(query: query.get("limit"), "limit")
            )
            return Self.json(.ok, .object(JSONObject([("data", .array(records.map(\.jsonValue)))])))
        }
        group.get("sessions/{session}/export") { _, context in
            // The session is validated before the status line is sent; then the export streams page by page.
            let session = try Self.session(context)
            return Response(
                status: .ok,
                headers: [.contentType: "application/x-ndjson"],
                body: ResponseBody { writer in
                    try await api.export(session: session) { lines in
                        try await writer.write(ByteBuffer(string: lines))
                    }
                    try await writer.finish(nil)
                }
            )
        }
        group.post("sessions/{session}/import") { request, context in
            let session = try Self.session(context)
            let bytes = try await request.body.collect(upTo: maxBodyBytes)
            let result = try await api.importLines(session: session, Array(bytes.readableBytesView))
            return Self.json(
                .ok,
                .object(JSONObject([("imported", .integer(result.imported)), ("skipped", .integer(result.skipped))]))
            )
        }
    }

    /// The `{session}` path parameter, percent-decoded and validated.
    static func session(_ context: ProxyRequestContext) throws -> String {
        try MemoryInput.session(try self.pathParameter(context, "session"))
    }

    static func memoryID(_ context: ProxyRequestContext) throws -> String {
        try self.pathParameter(context, "id")
    }

    private static func pathParameter(_ context: ProxyRequestContext, _ name: String) throws -> String {
        guard let raw = context.parameters.get(name), let value = raw.removingPercentEncoding else {
            throw MemoryInput.invalid("The \(name) in the path is not valid percent-encoding.", param: name)
        }
        return value
    }

    private static func body(_ request: Request, maxBodyBytes: Int, allowed: Set<String>) async throws -> JSONObject {
        let bytes = try await request.body.collect(upTo: maxBodyBytes)
        return try MemoryInput.object(bytes.readableBytesView, allowed: allowed)
    }

    private static func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: value.serialized()))
        )
    }
}
