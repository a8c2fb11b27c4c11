import Foundation
import Hummingbird
import MemProxyStore
import NIOCore

/// The dashboard's routes: login, overview, sessions and memories. Injections and the live view:
/// Dashboard+Injections.swift.
extension Dashboard {
    func addRoutes(to router: Router<ProxyRequestContext>) {
        let ui = self
        router.get("/ui/login") { request, context in
            guard ui.auth.apiKey != nil else { return Self.redirect(to: "/ui") }
            if case .allowed(_, nil) = ui.access(request, context) { return Self.redirect(to: "/ui") }
            return ui.page("login", ["title": "Log in"], session: nil)
        }
        router.post("/ui/login") { request, _ in
            guard ui.auth.apiKey != nil else { return Self.redirect(to: "/ui") }
            let fields = Self.formFields(String(buffer: try await request.body.collect(upTo: 64 * 1024)))
            guard let key = fields["key"], ui.auth.isAdminKey(key) else {
                return ui.page(
                    "login", status: .unauthorized, ["title": "Log in", "error": "That is the wrong key."], session: nil)
            }
            var response = Self.redirect(to: "/ui")
            response.headers[.setCookie] = UIAuth.setCookie(ui.auth.newCookie().value)
            return response
        }
        router.post("/ui/logout") { request, context in
            try await ui.guarded(request, context) { session in
                guard try await ui.form(request, session: session) != nil else { return ui.csrfRefused(session) }
                var response = Self.redirect(to: ui.auth.apiKey == nil ? "/ui" : "/ui/login")
                response.headers[.setCookie] = UIAuth.setCookie(nil)
                return response
            }
        }
        router.get("/ui") { request, context in
            try await ui.guarded(request, context) { session in try await ui.overview(session) }
        }
        router.get("/ui/sessions") { request, context in
            try await ui.guarded(request, context) { session in try await ui.sessions(request, session) }
        }
        router.get("/ui/sessions/{session}") { request, context in
            try await ui.guarded(request, context) { session in
                try await ui.sessionPage(request, try MemoryAPI.session(context), session)
            }
        }
        router.get("/ui/sessions/{session}/preview") { request, context in
            try await ui.guarded(request, context) { session in
                try await ui.preview(request, try MemoryAPI.session(context), session)
            }
        }
        router.get("/ui/sessions/{session}/export") { request, context in
            try await ui.guarded(request, context) { _ in try await ui.export(try MemoryAPI.session(context)) }
        }
        router.post("/ui/sessions/{session}/memories") { request, context in
            try await ui.guarded(request, context) { session in
                let id = try MemoryAPI.session(context)
                guard let fields = try await ui.form(request, session: session) else { return ui.csrfRefused(session) }
                _ = try await ui.api.add(
                    session: id, content: fields["content"] ?? "", type: fields["type"], metadata: nil)
                return Self.redirect(to: Self.sessionPath(id))
            }
        }
        router.get("/ui/sessions/{session}/memories/{id}/edit") { request, context in
            try await ui.guarded(request, context) { session in
                try await ui.memoryForm("edit", try MemoryAPI.session(context), try MemoryAPI.memoryID(context), session)
            }
        }
        router.post("/ui/sessions/{session}/memories/{id}") { request, context in
            try await ui.guarded(request, context) { session in
                let (id, memory) = (try MemoryAPI.session(context), try MemoryAPI.memoryID(context))
                guard let fields = try await ui.form(request, session: session) else { return ui.csrfRefused(session) }
                _ = try await ui.api.edit(
                    session: id, id: memory, content: fields["content"], type: fields["type"], metadata: nil)
                return Self.redirect(to: Self.sessionPath(id))
            }
        }
        router.get("/ui/sessions/{session}/memories/{id}/delete") { request, context in
            try await ui.guarded(request, context) { session in
                try await ui.memoryForm(
                    "confirm-delete", try MemoryAPI.session(context), try MemoryAPI.memoryID(context), session)
            }
        }
        router.post("/ui/sessions/{session}/memories/{id}/delete") { request, context in
            try await ui.guarded(request, context) { session in
                let (id, memory) = (try MemoryAPI.session(context), try MemoryAPI.memoryID(context))
                guard try await ui.form(request, session: session) != nil else { return ui.csrfRefused(session) }
                try await ui.api.delete(session: id, id: memory)
                return Self.redirect(to: Self.sessionPath(id))
            }
        }
        addInjectionRoutes(to: router)
    }

    // MARK: - Pages

    func overview(_ session: UIAuth.Session) async throws -> Response {
        if let health = storeHealth() { stats.recordStore(backlog: health.backlog, errors: health.errors) }
        let (total, hour, minutes) = stats.snapshot()
        func perRequest(_ value: Int, _ requests: Int) -> String {
            requests == 0 ? "–" : Self.number(Double(value) / Double(requests), 2)
        }
        typealias Series = (name: String, label: String, value: (DashboardStats.Window) -> String, plot: (DashboardStats.Window) -> Double)
        let series: [Series] = [
            ("requests_with_memory", "Requests with memory", { "\($0.requests)" }, { Double($0.requests) }),
            ("memories_per_request", "Memories injected per request", { perRequest($0.memories, $0.requests) },
             { $0.requests == 0 ? 0 : Double($0.memories) / Double($0.requests) }),
            ("tokens_per_request", "Tokens injected per request", { perRequest($0.tokens, $0.requests) },
             { $0.requests == 0 ? 0 : Double($0.tokens) / Double($0.requests) }),
            ("recall_p50_ms", "Recall p50 (ms)", { Self.number(DashboardStats.percentile($0, 0.5), 2) },
             { DashboardStats.percentile($0, 0.5) }),
            ("recall_p99_ms", "Recall p99 (ms)", { Self.number(DashboardStats.percentile($0, 0.99), 2) },
             { DashboardStats.percentile($0, 0.99) }),
            ("fail_open", "Fail-open (memory skipped)", { "\($0.failOpen)" }, { Double($0.failOpen) }),
            ("writer_backlog", "Writer backlog (max)", { "\($0.backlog)" }, { Double($0.backlog) }),
            ("store_errors", "Store errors (total)", { "\($0.storeErrors)" }, { Double($0.storeErrors) }),
        ]
        let counts = try await store.dashboardCounts()
        let values: [String: Any] = [
            "title": "Overview",
            "uptime": Self.duration(Date().timeIntervalSince(stats.started)),
            "stats": series.map { item -> [String: Any] in
                [
                    "name": item.name, "label": item.label, "start": item.value(total), "hour": item.value(hour),
                    "chart": DashboardStats.chart(minutes.map(item.plot), label: item.label),
                ]
            },
            "sessions": counts.sessions, "memories": counts.memories.total, "episodic": counts.memories.episodic,
            "semantic": counts.memories.semantic, "procedural": counts.memories.procedural,
            "injections": counts.injectionRecordsAtMost,
        ]
        return page("overview", values, session: session)
    }

    func sessions(_ request: Request, _ session: UIAuth.Session) async throws -> Response {
        let query = Self.query(request)
        let prefix = query["prefix"].flatMap { $0.isEmpty ? nil : $0 }
        let cursor = query["cursor"].flatMap { SessionCursor(token: $0) }
        let page = try await store.sessionSummaries(prefix: prefix, limit: 50, after: cursor)
        let rows = page.sessions.map { summary -> [String: Any] in
            [
                "id": summary.sessionID, "href": Self.sessionPath(summary.sessionID),
                "total": summary.memoryCounts.total, "episodic": summary.memoryCounts.episodic,
                "semantic": summary.memoryCounts.semantic, "procedural": summary.memoryCounts.procedural,
                "lastActivity": Self.time(summary.lastActivity),
            ]
        }
        var values: [String: Any] = [
            "title": "Sessions", "prefix": prefix ?? "", "rows": rows,
            "caption": prefix.map { "Sessions whose id starts with “\($0)”" } ?? "All sessions, by id",
        ]
        if let next = page.nextCursor {
            values["next"] = "/ui/sessions?cursor=\(Self.encode(next.token))" + (prefix.map { "&prefix=\(Self.encode($0))" } ?? "")
        }
        return self.page("sessions", values, session: session)
    }

    static let memoryTypes = ["episodic", "semantic", "procedural"]

    func sessionPage(_ request: Request, _ id: String, _ session: UIAuth.Session) async throws -> Response {
        let query = Self.query(request)
        let type = query["type"].flatMap { $0.isEmpty ? nil : $0 }
        let listed = try await api.list(session: id, type: type, limit: 50, cursor: query["cursor"])
        let base = Self.sessionPath(id)
        var values: [String: Any] = [
            "title": "Session \(id)", "session": id, "base": base, "sessionQuery": Self.encode(id),
            "filtered": type != nil,
            "types": [["value": "", "label": "all types", "selected": type == nil]]
                + Self.memoryTypes.map { ["value": $0, "label": $0, "selected": type == $0] },
            "memories": listed.data.map { memory -> [String: Any] in
                [
                    "id": memory.id, "content": memory.content, "type": memory.type,
                    "created": Self.time(memory.createdAt), "href": base + "/memories/" + Self.encode(memory.id),
                ]
            },
        ]
        if let next = listed.nextCursor {
            values["next"] = base + "?cursor=\(Self.encode(next))" + (type.map { "&type=\(Self.encode($0))" } ?? "")
        }
        return page("session", values, session: session)
    }

    func memoryForm(_ template: String, _ id: String, _ memoryID: String, _ session: UIAuth.Session) async throws
        -> Response
    {
        let memory = try await api.get(session: id, id: memoryID)
        let base = Self.sessionPath(id)
        let path = base + "/memories/" + Self.encode(memoryID)
        let values: [String: Any] = [
            "title": template == "edit" ? "Edit memory" : "Delete memory", "session": id, "id": memory.id,
            "content": memory.content, "type": memory.type, "back": base,
            "action": template == "edit" ? path : path + "/delete",
            "types": Self.memoryTypes.map { ["value": $0, "selected": memory.type == $0] },
        ]
        return page(template, values, session: session)
    }

    func preview(_ request: Request, _ id: String, _ session: UIAuth.Session) async throws -> Response {
        let text = Self.query(request)["query"] ?? ""
        let result = try await api.recall(session: id, query: text, topK: nil, explain: true)
        var values = Self.parts(result.memories, session: id, tableID: "preview-memories")
        values["title"] = "Recall preview"
        values["session"] = id
        values["back"] = Self.sessionPath(id)
        values["query"] = text
        values["block"] = result.context
        values["recall"] = result.recall ?? ""
        return page("preview", values, session: session)
    }

    /// The values of the `parts` partial: one row per recalled memory with its score in parts.
    static func parts(_ memories: [MemoryObject], session: String, tableID: String) -> [String: Any] {
        let rows = memories.map { memory -> [String: Any] in
            let parts = memory.explanation
            func part(_ value: Double?) -> String { value.map { number($0) } ?? "" }
            return [
                "id": memory.id, "type": memory.type, "content": memory.content,
                "href": sessionPath(session) + "/memories/" + encode(memory.id) + "/edit",
                "content_part": part(parts?.content), "near": part(parts?.near), "far": part(parts?.far),
                "date": part(parts?.date), "type_weight": part(parts?.typeWeight), "temporal": part(parts?.temporal),
                "dense": part(parts?.dense), "score": part(memory.score),
            ]
        }
        return ["memories": rows, "tableID": tableID]
    }

    func export(_ id: String) async throws -> Response {
        var body = ""
        _ = try await api.export(session: id) { body += $0 }
        return Response(
            status: .ok,
            headers: [
                .contentType: "application/x-ndjson; charset=utf-8",
                .contentDisposition: "attachment; filename=\"memories.jsonl\"", .cacheControl: "no-store",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
