import Foundation
import Hummingbird
import MemProxyCore
import MemProxyStore
import NIOCore

/// The injection log pages and the live view (Server-Sent Events).
extension Dashboard {
    static let apis = ["chat.completions", "responses", "messages"]

    func addInjectionRoutes(to router: Router<ProxyRequestContext>) {
        let ui = self
        router.get("/ui/injections") { request, context in
            try await ui.guarded(request, context) { session in try await ui.injections(request, session) }
        }
        router.get("/ui/injections/{request_id}") { request, context in
            try await ui.guarded(request, context) { session in
                guard let id = context.parameters.get("request_id")?.removingPercentEncoding else {
                    throw MemoryInput.invalid("The request id in the path is not valid percent-encoding.", param: "request_id")
                }
                return try await ui.injection(id, session)
            }
        }
        router.get("/ui/live") { request, context in
            try await ui.guarded(request, context) { session in
                ui.page("live", ["title": "Live"], session: session)
            }
        }
        router.get("/ui/live/events") { request, context in
            try await ui.guarded(request, context) { _ in try await ui.liveEvents() }
        }
    }

    func injections(_ request: Request, _ session: UIAuth.Session) async throws -> Response {
        let query = Self.query(request)
        func field(_ name: String) -> String? {
            query[name].map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        let filter = DashboardInjectionFilter(
            session: field("session"), requestID: field("request_id"), api: field("api"))
        let page = try await store.recentInjections(
            filter: filter, limit: 50, before: field("cursor").flatMap { Int64($0) })
        let rows = page.injections.map { stored -> [String: Any] in
            let record = stored.record
            return [
                "requestID": record.requestID, "href": "/ui/injections/" + Self.encode(record.requestID),
                "session": record.sessionID, "sessionHref": Self.sessionPath(record.sessionID),
                "api": record.api, "model": record.model ?? "–", "memories": record.memoryIDs.count,
                "tokens": record.tokens, "recallMs": Self.number(record.recallMs, 2),
                "created": Self.time(record.createdAt),
            ]
        }
        var values: [String: Any] = [
            "title": "Injections", "rows": rows, "session": filter.session ?? "", "requestID": filter.requestID ?? "",
            "apis": [["value": "", "label": "all APIs", "selected": filter.api == nil]]
                + Self.apis.map { ["value": $0, "label": $0, "selected": filter.api == $0] },
        ]
        if let next = page.nextCursor {
            var link = "/ui/injections?cursor=\(next)"
            for (name, value) in [("session", filter.session), ("request_id", filter.requestID), ("api", filter.api)] {
                if let value { link += "&\(name)=\(Self.encode(value))" }
            }
            values["next"] = link
        }
        return self.page("injections", values, session: session)
    }

    func injection(_ requestID: String, _ session: UIAuth.Session) async throws -> Response {
        let explained = try await api.explain(requestID: requestID)
        let record = explained.injection
        // The recorded memories as they are now (a deleted one is shown as such).
        var contents: [String: String] = [:]
        for id in record.memoryIDs {
            if let memory = try? await api.get(session: record.sessionID, id: id) { contents[id] = memory.content }
        }
        let base = Self.sessionPath(record.sessionID)
        var values: [String: Any] = [
            "title": "Request \(record.requestID)", "requestID": record.requestID, "session": record.sessionID,
            "sessionHref": base, "api": record.api, "model": record.model ?? "–", "tokens": record.tokens,
            "recallMs": Self.number(record.recallMs, 2), "created": Self.time(record.createdAt),
            "query": record.query ?? "–", "block": record.block,
            "recorded": zip(record.memoryIDs, record.scores).map { id, score -> [String: Any] in
                var row: [String: Any] = [
                    "id": id, "score": Self.number(score), "href": base + "/memories/" + Self.encode(id) + "/edit",
                ]
                if let content = contents[id] { row["content"] = content }
                return row
            },
        ]
        if let replay = explained.replayedNow {
            values["replayed"] = Self.parts(replay.memories, session: record.sessionID, tableID: "replayed-memories")
        }
        return page("injection", values, session: session)
    }

    /// New injection records as Server-Sent Events (`event: injection`), polled from the log every half second
    /// while the client listens (so records written by another process show too); a comment every 15 s keeps
    /// proxies from closing an idle stream. Ends when the client goes away.
    func liveEvents() async throws -> Response {
        let store = self.store
        let start = try await store.latestInjectionSequence()
        let body = ResponseBody { writer in
            var last = start
            var idle = 0
            try await writer.write(ByteBuffer(string: ": memproxy live injections\n\n"))
            while !Task.isCancelled {
                let records = try await store.injections(afterSequence: last, limit: 100)
                for stored in records {
                    last = max(last, stored.sequence)
                    try await writer.write(ByteBuffer(string: "event: injection\ndata: \(Self.eventJSON(stored))\n\n"))
                }
                if records.isEmpty {
                    idle += 1
                    if idle % 30 == 0 { try await writer.write(ByteBuffer(string: ": keep-alive\n\n")) }
                    try await Task.sleep(for: .milliseconds(500))
                } else {
                    idle = 0
                }
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-store"],
            body: body)
    }

    static func eventJSON(_ stored: StoredInjection) -> String {
        let record = stored.record
        let object = JSONObject([
            ("request_id", .string(record.requestID)), ("session_id", .string(record.sessionID)),
            ("api", .string(record.api)), ("model", record.model.map(JSONValue.string) ?? .null),
            ("memory_ids", .array(record.memoryIDs.map(JSONValue.string))), ("tokens", .integer(record.tokens)),
            ("recall_ms", .real(record.recallMs)), ("created_at", .time(record.createdAt)),
        ])
        return JSONValue.object(object).text
    }
}
