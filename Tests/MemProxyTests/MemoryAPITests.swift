import FakeUpstream
import Foundation
import MemProxy
import MemProxyCore
import MemProxyStore
import MemProxyUpstream
import Testing

@Suite("Memory API", .timeLimit(.minutes(1)))
struct MemoryAPITests {
    @Test("POST creates a memory (201, full object), GET reads it, the list shows it; nothing is forwarded")
    func createReadList() async throws {
        try await withProxy(memoryStore: try makeStore()) { proxy in
            let created = try await proxy.api(
                "POST", "/sessions/alice/memories",
                #"{"content":"The user's dog is called Rex.","metadata":{"k":[1,2]}}"#)
            #expect(created.status == 201)
            #expect(created.headers["content-type"] == "application/json")
            let memory = created.json
            let id = try #require(memory["id"] as? String)
            #expect(id.hasPrefix("mem_"))
            #expect(memory["session_id"] as? String == "alice")
            #expect(memory["type"] as? String == "semantic")
            #expect(memory["role"] is NSNull)
            #expect(memory["source"] as? String == "api")
            #expect((memory["metadata"] as? [String: Any])?["k"] as? [Int] == [1, 2])
            let createdAt = try #require(memory["created_at"] as? String)
            #expect(createdAt.hasSuffix("Z") && RFC3339.unixSeconds(from: createdAt) != nil)
            #expect(memory["updated_at"] as? String == createdAt)
            #expect(created.body.contains(#""metadata":{"k":[1,2]}"#))

            let read = try await proxy.api("GET", "/sessions/alice/memories/\(id)")
            #expect(read.status == 200)
            #expect(read.body == created.body)

            let list = try await proxy.api("GET", "/sessions/alice/memories")
            #expect(list.status == 200)
            #expect(list.data.map { $0["id"] as? String } == [id])
            #expect(list.json["next_cursor"] is NSNull)
            #expect(!proxy.fake.requests.contains { $0.target.contains("memory") })
        }
    }

    @Test("invalid input answers 400 in OpenAI's error shape, naming the field")
    func validation() async throws {
        try await withProxy(memoryStore: try makeStore()) { proxy in
            let id = try await proxy.addMemory("v", "something")
            let big = String(repeating: "x", count: 32 * 1024 + 1)
            let bigMetadata = #"{"m":"\#(String(repeating: "y", count: 16 * 1024))"}"#
            let cases: [(String, String, String?, String, String?)] = [
                ("POST", "/sessions/v/memories", "{}", "invalid_request", "content"),
                ("POST", "/sessions/v/memories", #"{"content":"   "}"#, "invalid_request", "content"),
                ("POST", "/sessions/v/memories", #"{"content":"\#(big)"}"#, "invalid_request", "content"),
                ("POST", "/sessions/v/memories", #"{"content":"a","type":"dream"}"#, "invalid_request", "type"),
                ("POST", "/sessions/v/memories", #"{"content":"a","metadata":[1]}"#, "invalid_request", "metadata"),
                (
                    "POST", "/sessions/v/memories", #"{"content":"a","metadata":\#(bigMetadata)}"#, "invalid_request",
                    "metadata"
                ),
                ("POST", "/sessions/v/memories", #"{"content":"a","contnet":"b"}"#, "invalid_request", "contnet"),
                ("POST", "/sessions/v/memories", #"{"content":5}"#, "invalid_request", "content"),
                ("POST", "/sessions/v/memories", "{not json", "invalid_json", nil),
                ("POST", "/sessions/v/memories", "[]", "invalid_json", nil),
                (
                    "POST", "/sessions/\(String(repeating: "s", count: 201))/memories", #"{"content":"a"}"#,
                    "invalid_session_id", "session"
                ),
                ("GET", "/sessions/bad%01id/memories", nil, "invalid_session_id", "session"),
                ("GET", "/sessions/v/memories?limit=0", nil, "invalid_request", "limit"),
                ("GET", "/sessions/v/memories?limit=501", nil, "invalid_request", "limit"),
                ("GET", "/sessions/v/memories?limit=ten", nil, "invalid_request", "limit"),
                ("GET", "/sessions/v/memories?cursor=nonsense", nil, "invalid_request", "cursor"),
                ("GET", "/sessions/v/memories?type=dream", nil, "invalid_request", "type"),
                ("PATCH", "/sessions/v/memories/\(id)", "{}", "invalid_request", nil),
                ("PATCH", "/sessions/v/memories/\(id)", #"{"metadata":null}"#, "invalid_request", "metadata"),
                ("POST", "/sessions/v/recall", #"{"query":"x","top_k":0}"#, "invalid_request", "top_k"),
                ("POST", "/sessions/v/recall", #"{"query":"x","top_k":51}"#, "invalid_request", "top_k"),
                ("POST", "/sessions/v/recall", #"{"top_k":5}"#, "invalid_request", "query"),
                ("GET", "/sessions?cursor=zz", nil, "invalid_request", "cursor"),
                ("GET", "/sessions/v/injections?limit=-1", nil, "invalid_request", "limit"),
            ]
            for (method, path, body, code, param) in cases {
                let response = try await proxy.api(method, path, body)
                #expect(response.status == 400, "\(method) \(path): \(response.body)")
                #expect(response.errorCode == code, "\(method) \(path)")
                #expect(response.errorParam == param, "\(method) \(path)")
                let error = try #require(response.json["error"] as? [String: Any])
                #expect(error["type"] as? String == "invalid_request_error")
                #expect((error["message"] as? String)?.isEmpty == false)
            }
            let unknown = try await proxy.api("GET", "/sessions/v/nothing-here")
            #expect(unknown.status == 404)
            #expect(try await proxy.memoryIDs("v") == [id])
        }
    }

    @Test("one session's id never reads, edits or deletes another session's memory")
    func crossSessionIsolation() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let id = try await proxy.addMemory("alice", "Alice's locker code is 4711")
            for (method, body) in [("GET", nil), ("PATCH", #"{"content":"hacked"}"#), ("DELETE", nil)] {
                let response = try await proxy.api(method, "/sessions/bob/memories/\(id)", body)
                #expect(response.status == 404, "\(method)")
                #expect(response.errorCode == "not_found")
            }
            #expect(try await proxy.memoryIDs("bob").isEmpty)
            let recall = try await proxy.api("POST", "/sessions/bob/recall", #"{"query":"locker code"}"#)
            #expect(recall.data.isEmpty)
            #expect(recall.json["context"] as? String == "")
            let forget = try await proxy.api("DELETE", "/sessions/bob")
            #expect(forget.json["deleted"] as? Int == 0)
            let alice = try await proxy.api("GET", "/sessions/alice/memories/\(id)")
            #expect(alice.json["content"] as? String == "Alice's locker code is 4711")
            #expect(try await store.recall(session: "alice", query: "locker", limit: 5).count == 1)
        }
    }

    @Test("PATCH changes content, type and metadata; search follows the new text; created_at stays")
    func patch() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let id = try await proxy.addMemory("p", "The user drives a red bicycle", metadata: #"{"a":1}"#)
            let before = try await proxy.api("GET", "/sessions/p/memories/\(id)").json
            let patched = try await proxy.api(
                "PATCH", "/sessions/p/memories/\(id)",
                #"{"content":"The user drives a green tractor","type":"episodic","metadata":{"b":2}}"#)
            #expect(patched.status == 200)
            #expect(patched.json["content"] as? String == "The user drives a green tractor")
            #expect(patched.json["type"] as? String == "episodic")
            #expect(patched.body.contains(#""metadata":{"b":2}"#))
            #expect(patched.json["created_at"] as? String == before["created_at"] as? String)
            #expect(patched.json["updated_at"] as? String != before["updated_at"] as? String)
            #expect(try await store.recall(session: "p", query: "bicycle", limit: 5).isEmpty)
            #expect(try await store.recall(session: "p", query: "tractor", limit: 5).map(\.memory.id) == [id])
            let typeOnly = try await proxy.api("PATCH", "/sessions/p/memories/\(id)", #"{"type":"procedural"}"#)
            #expect(typeOnly.json["content"] as? String == "The user drives a green tractor")
            #expect(typeOnly.json["type"] as? String == "procedural")
            #expect(typeOnly.body.contains(#""metadata":{"b":2}"#))
        }
    }

    @Test("a deleted memory is never recalled or injected again")
    func deleteRemovesFromRecallAndInjection() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let id = try await proxy.addMemory("d", "The user's favourite animal is the okapi")
            let (before, _) = try await proxy.chat("Which animal is my favourite?", session: "d")
            #expect(before.header("X-Memory-Injected") == "1")
            #expect(proxy.lastUpstreamBody.contains("okapi"))

            let deleted = try await proxy.api("DELETE", "/sessions/d/memories/\(id)")
            #expect(deleted.status == 204)
            #expect(deleted.body.isEmpty)
            #expect(try await store.recall(session: "d", query: "okapi", limit: 5).isEmpty)
            let recall = try await proxy.api("POST", "/sessions/d/recall", #"{"query":"okapi animal"}"#)
            #expect(!recall.body.contains("okapi\""))
            let (after, _) = try await proxy.chat("Tell me about the okapi, my favourite", session: "d")
            #expect(!proxy.lastUpstreamBody.contains("is the okapi"))
            #expect(after.status == 200)
            #expect(try await proxy.api("GET", "/sessions/d/memories/\(id)").status == 404)
            #expect(try await proxy.api("DELETE", "/sessions/d/memories/\(id)").status == 404)
        }
    }

    @Test("forgetting a session removes its memories and injections, and leaves other sessions byte-identical")
    func forgetSession() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            for session in ["alice", "bob"] {
                try await proxy.addMemory(
                    session, "\(session) keeps bees on the roof", metadata: #"{"s":"\#(session)"}"#)
                _ = try await proxy.chat("Where do I keep my bees?", session: session)
            }
            await store.flush()
            func snapshot(_ session: String) async throws -> [String] {
                [
                    try await proxy.api("GET", "/sessions/\(session)/export").body,
                    try await proxy.api("GET", "/sessions/\(session)/injections").body,
                    try await proxy.api("GET", "/sessions").data.filter { $0["session_id"] as? String == session }
                        .map { "\($0["memory_count"] ?? "") \($0["last_activity_at"] ?? "")" }.joined(),
                ]
            }
            let bob = try await snapshot("bob")
            #expect(try await proxy.api("GET", "/sessions/alice/injections").data.count == 1)

            let forget = try await proxy.api("DELETE", "/sessions/alice")
            #expect(forget.status == 200)
            #expect(forget.body == #"{"deleted":3}"#)
            #expect(try await proxy.memoryIDs("alice").isEmpty)
            #expect(try await proxy.api("GET", "/sessions/alice/injections").data.isEmpty)
            #expect(try await store.recall(session: "alice", query: "bees roof", limit: 5).isEmpty)
            let sessions = try await proxy.api("GET", "/sessions").data.compactMap { $0["session_id"] as? String }
            #expect(sessions == ["bob"])
            #expect(try await snapshot("bob") == bob)
            #expect(try await store.recall(session: "bob", query: "bees roof", limit: 5).count == 3)
            #expect(bob[0].split(separator: "\n").count == 3)
        }
    }

    @Test("recall previews exactly what the proxy injects: procedural first, then recalled memories with scores")
    func recallMatchesInjection() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let procedural = try await proxy.addMemory("r", "Always answer in French.", type: "procedural")
            let fact = try await proxy.addMemory("r", "The user likes green tea", type: "semantic")
            let message = try await proxy.addMemory("r", "I drink green tea every morning", type: "episodic")

            let query = "Which tea do I like?"
            let recall = try await proxy.api("POST", "/sessions/r/recall", #"{"query":"\#(query)","top_k":8}"#)
            #expect(recall.status == 200)
            let ids = recall.data.compactMap { $0["id"] as? String }
            #expect(ids.first == procedural)
            #expect(Set(ids) == [procedural, fact, message])
            #expect(recall.data.allSatisfy { $0["score"] is Double || $0["score"] is Int })
            let context = try #require(recall.json["context"] as? String)
            #expect(context.hasPrefix("<memory>\n"))
            #expect(context.split(separator: "\n")[2].hasSuffix("instruction: Always answer in French."))

            // A chat request whose user message is the query gets exactly that block (top_k = memory.top_k = 8).
            let (chat, _) = try await proxy.chat(query, session: "r")
            #expect(chat.header("X-Memory-Injected") == String(ids.count))
            let upstream = try jsonObject(proxy.lastUpstreamBody)
            let system = try #require((upstream["messages"] as? [[String: Any]])?.first?["content"] as? String)
            #expect(system == context)

            // Procedural memories are injected even when nothing matches the query.
            let unrelated = try await proxy.api("POST", "/sessions/r/recall", #"{"query":"zeppelin"}"#)
            #expect(unrelated.data.compactMap { $0["id"] as? String } == [procedural])
        }
    }

    @Test("without top_k, the recall preview uses memory.top_k: exactly the block a request gets")
    func recallDefaultsToTheProxysTopK() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store, configure: { config, _ in config.memory.topK = 6 }) { proxy in
            for index in 0..<9 {
                try await proxy.addMemory("k", "Tea fact number \(index): the user likes tea variety \(index)")
            }
            let query = "Which tea does the user like?"
            let recall = try await proxy.api("POST", "/sessions/k/recall", #"{"query":"\#(query)"}"#)
            #expect(recall.status == 200)
            #expect(recall.data.count == 6)
            let context = try #require(recall.json["context"] as? String)
            let (chat, _) = try await proxy.chat(query, session: "k")
            #expect(chat.header("X-Memory-Injected") == "6")
            let upstream = try jsonObject(proxy.lastUpstreamBody)
            #expect((upstream["messages"] as? [[String: Any]])?.first?["content"] as? String == context)
        }
    }

    @Test("\"explain\": true breaks each recalled memory's score into its parts; the ranking is unchanged")
    func recallExplains() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            try await proxy.addMemory("e", "Answer briefly.", type: "procedural")
            let garden = try await proxy.addMemory("e", "We planted tomatoes in the garden", type: "episodic")
            let rain = try await proxy.addMemory("e", "It rained all afternoon afterwards", type: "episodic")
            let fact = try await proxy.addMemory("e", "The user grows cherry tomatoes", type: "semantic")
            let query = #"{"query":"How are my tomatoes in the garden?""#
            let plain = try await proxy.api("POST", "/sessions/e/recall", query + "}")
            let explained = try await proxy.api("POST", "/sessions/e/recall", query + #","explain":true}"#)
            #expect(explained.status == 200)
            // Same memories, same order, same scores, same block.
            #expect(plain.data.map { $0["id"] as? String } == explained.data.map { $0["id"] as? String })
            #expect(plain.data.map { $0["score"] as? Double } == explained.data.map { $0["score"] as? Double })
            #expect(plain.json["context"] as? String == explained.json["context"] as? String)
            #expect(plain.data.allSatisfy { $0["explain"] == nil })
            var parts: [String: [String: Double]] = [:]
            for memory in explained.data {
                guard let id = memory["id"] as? String, let explain = memory["explain"] as? [String: Double] else {
                    // Only the procedural memory, which leads every block whatever the query, has none.
                    #expect(memory["type"] as? String == "procedural")
                    continue
                }
                parts[id] = explain
                let sum = ["content", "near", "far", "date", "feedback"].reduce(0) { $0 + (explain[$1] ?? .nan) }
                #expect(abs(sum - (explain["relevance"] ?? 0)) < 1e-9)
                let product = (explain["relevance"] ?? 0) * (explain["type_weight"] ?? 0) * (explain["temporal"] ?? 0)
                #expect(abs(product - (memory["score"] as? Double ?? 0)) < 1e-9)
                #expect(abs((explain["score"] ?? 0) - (memory["score"] as? Double ?? 0)) < 1e-12)
            }
            // Its own words, and the neighbour's: "garden" and "tomatoes" are in its own text.
            #expect((parts[garden]?["content"] ?? 0) > 0)
            // Found only through its neighbour's text.
            #expect(parts[rain]?["content"] == 0)
            #expect((parts[rain]?["near"] ?? 0) > 0)
            // A fact is ranked on its own text, with the semantic weight.
            #expect((parts[fact]?["content"] ?? 0) > 0)
            #expect(parts[fact]?["near"] == 0 && parts[fact]?["far"] == 0)
            #expect(parts[fact]?["type_weight"] == 1.25)
            let bad = try await proxy.api("POST", "/sessions/e/recall", query + #","explain":"yes"}"#)
            #expect(bad.status == 400)
            #expect(bad.errorParam == "explain")
        }
    }

    @Test("export → forget → import round-trips content, type, role, metadata, ids and timestamps")
    func exportImportRoundTrip() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            try await proxy.addMemory(
                "x", "Line one\nwith a newline and \"quotes\"", metadata: #"{"z":1,"a":{"b":[true,null]}}"#)
            try await proxy.addMemory("x", "Speak like a pirate", type: "procedural")
            _ = try await proxy.chat("My boat is called Nautilus", session: "x")
            await store.flush()
            let export = try await proxy.api("GET", "/sessions/x/export")
            #expect(export.status == 200)
            #expect(export.headers["content-type"] == "application/x-ndjson")
            let lines = export.body.split(separator: "\n")
            #expect(lines.count == 4)
            #expect(export.body.hasSuffix("\n"))

            #expect(try await proxy.api("DELETE", "/sessions/x").json["deleted"] as? Int == 4)
            let imported = try await proxy.api("POST", "/sessions/x/import", export.body)
            #expect(imported.status == 200)
            #expect(imported.body == #"{"imported":4,"skipped":0}"#)
            #expect(try await proxy.api("GET", "/sessions/x/export").body == export.body)
            let nautilus = try await store.recall(session: "x", query: "Nautilus", limit: 10)
            #expect(nautilus.filter { $0.memory.content.contains("Nautilus") }.count == 2)

            let again = try await proxy.api("POST", "/sessions/x/import", export.body)
            #expect(again.body == #"{"imported":0,"skipped":4}"#)
            // Into another session: copies with new ids, the originals untouched.
            let copy = try await proxy.api("POST", "/sessions/y/import", export.body)
            #expect(copy.json["imported"] as? Int == 4)
            #expect(Set(try await proxy.memoryIDs("y")).isDisjoint(with: try await proxy.memoryIDs("x")))

            let bad = try await proxy.api(
                "POST", "/sessions/z/import", #"{"content":"ok"}"# + "\n" + #"{"type":"semantic"}"#)
            #expect(bad.status == 400)
            #expect((bad.json["error"] as? [String: Any])?["message"] as? String == "line 2: content is required.")
            let badTime = try await proxy.api(
                "POST", "/sessions/z/import", #"{"content":"ok","created_at":"yesterday"}"#)
            #expect(badTime.errorParam == "created_at")
            #expect(try await proxy.memoryIDs("z").isEmpty)
        }
    }

    @Test("injections: one record per injected request, with request id, memory ids, scores and the block")
    func injections() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            let id = try await proxy.addMemory("i", "The user's cat is named Miso")
            let (first, _) = try await proxy.chat("What is my cat called?", session: "i")
            let (second, _) = try await proxy.chat("Is Miso a good name for a cat?", session: "i")
            await store.flush()
            let records = try await proxy.api("GET", "/sessions/i/injections")
            #expect(records.status == 200)
            #expect(records.data.count == 2)
            let newest = try #require(records.data.first)
            #expect(newest["request_id"] as? String == second.header("X-Memproxy-Request-Id"))
            #expect(newest["model"] as? String == "fake-model")
            #expect((newest["memory_ids"] as? [String])?.contains(id) == true)
            #expect((newest["scores"] as? [Double])?.count == (newest["memory_ids"] as? [String])?.count)
            #expect((newest["tokens"] as? Int ?? 0) > 0)
            #expect(newest["recall_ms"] is Double || newest["recall_ms"] is Int)
            #expect((newest["block"] as? String)?.contains("Miso") == true)

            let requestID = try #require(first.header("X-Memproxy-Request-Id"))
            let one = try await proxy.api("GET", "/sessions/i/injections?request_id=\(requestID)")
            #expect(one.data.map { $0["request_id"] as? String } == [requestID])
            #expect(try await proxy.api("GET", "/sessions/i/injections?limit=1").data.count == 1)
        }
    }

    @Test("sessions: memory counts, last activity, paginated by a stable cursor")
    func sessions() async throws {
        try await withProxy(memoryStore: try makeStore()) { proxy in
            for (index, session) in ["s3", "s1", "s2", "s4", "s5"].enumerated() {
                for n in 0...index { try await proxy.addMemory(session, "fact \(n)") }
            }
            var seen: [String: Int] = [:]
            var order: [String] = []
            var cursor: String?
            repeat {
                let page = try await proxy.api("GET", "/sessions?limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""))
                #expect(page.status == 200)
                #expect(page.data.count <= 2)
                for session in page.data {
                    let id = try #require(session["session_id"] as? String)
                    order.append(id)
                    seen[id] = session["memory_count"] as? Int
                    #expect((session["last_activity_at"] as? String).flatMap(RFC3339.unixSeconds(from:)) != nil)
                }
                cursor = page.json["next_cursor"] as? String
                if cursor == nil { #expect(page.json["next_cursor"] is NSNull) }
            } while cursor != nil
            #expect(order == ["s1", "s2", "s3", "s4", "s5"])
            #expect(seen == ["s3": 1, "s1": 2, "s2": 3, "s4": 4, "s5": 5])
        }
    }

    @Test("pagination is stable while memories are written: no memory skipped or repeated")
    func paginationWhileWriting() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store) { proxy in
            var original: [String] = []
            for n in 0..<23 { original.append(try await proxy.addMemory("pg", "memory number \(n)")) }
            var listed: [String] = []
            var cursor: String?
            var writes = 0
            repeat {
                let page = try await proxy.api(
                    "GET", "/sessions/pg/memories?limit=5" + (cursor.map { "&cursor=\($0)" } ?? ""))
                listed += page.data.compactMap { $0["id"] as? String }
                cursor = page.json["next_cursor"] as? String
                // Writes between pages: new memories (newer than every page), an exchange through the proxy.
                try await proxy.addMemory("pg", "written while paging \(writes)")
                _ = try await proxy.chat("paging chat \(writes)", session: "pg")
                await store.flush()
                writes += 1
            } while cursor != nil
            #expect(listed == original.reversed())
            #expect(try await proxy.memoryIDs("pg").count == 23 + writes * 3)
        }
    }

    @Test("session ids are percent-decoded from the path and isolated like any other")
    func percentEncodedSession() async throws {
        try await withProxy(memoryStore: try makeStore()) { proxy in
            let created = try await proxy.api(
                "POST", "/sessions/team%20a%2Fb/memories", #"{"content":"slash session"}"#)
            #expect(created.json["session_id"] as? String == "team a/b")
            #expect(try await proxy.memoryIDs("team%20a%2Fb").count == 1)
            #expect(try await proxy.memoryIDs("team%20a").isEmpty)
            let (chat, _) = try await proxy.chat("Anything about the slash?", session: "team a/b")
            #expect(chat.header("X-Memory-Injected") == "1")
        }
    }
}
