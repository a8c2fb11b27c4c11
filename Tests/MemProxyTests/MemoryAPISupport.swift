import Foundation
import MemProxyStore
import MemProxyUpstream
import Testing

/// A memory API answer: status, raw body, and the body parsed as a JSON object when it is one.
struct APIResponse {
    let status: Int
    let body: String
    let headers: [String: String]

    var json: [String: Any] { (try? jsonObject(self.body)) ?? [:] }
    var data: [[String: Any]] { self.json["data"] as? [[String: Any]] ?? [] }
    var errorCode: String? { (self.json["error"] as? [String: Any])?["code"] as? String }
    var errorParam: String? { (self.json["error"] as? [String: Any])?["param"] as? String }
}

extension ProxyHarness {
    /// Calls memproxy's own memory API (`/memory/v1` + `path`).
    func api(
        _ method: String,
        _ path: String,
        _ body: String? = nil,
        headers: [(name: String, value: String)] = []
    ) async throws -> APIResponse {
        let (response, text) = try await self.fetch(
            method, "/memory/v1" + path, headers: [("Content-Type", "application/json")] + headers, body: body)
        var fields: [String: String] = [:]
        for name in ["content-type", "x-memproxy-request-id"] { fields[name] = response.header(name) }
        return APIResponse(status: response.status, body: text, headers: fields)
    }

    /// Adds a memory through the API and returns its id.
    @discardableResult
    func addMemory(_ session: String, _ content: String, type: String = "semantic", metadata: String = "{}")
        async throws -> String
    {
        let body = #"{"content":\#(jsonString(content)),"type":"\#(type)","metadata":\#(metadata)}"#
        let response = try await self.api("POST", "/sessions/\(session)/memories", body)
        #expect(response.status == 201, "\(response.body)")
        return try #require(response.json["id"] as? String)
    }

    /// The ids of a session's memories, newest first (all pages).
    func memoryIDs(_ session: String) async throws -> [String] {
        var ids: [String] = []
        var cursor: String?
        repeat {
            let response = try await self.api(
                "GET", "/sessions/\(session)/memories?limit=500" + (cursor.map { "&cursor=\($0)" } ?? ""))
            #expect(response.status == 200)
            ids += response.data.compactMap { $0["id"] as? String }
            cursor = response.json["next_cursor"] as? String
        } while cursor != nil
        return ids
    }
}

/// `text` as a JSON string literal.
func jsonString(_ text: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [text], options: [])
    return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
}
