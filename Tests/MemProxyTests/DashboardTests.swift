import Foundation
import MemProxyStore
import MemProxyUpstream
import Testing

@testable import MemProxy

/// The dashboard (issue 15) without a browser: access, CSRF, escaping, what each page shows. The browser suite
/// (Tests/python/test_ui_browser.py) drives the same pages in headless Chromium.
@Suite("Dashboard", .timeLimit(.minutes(2)))
struct DashboardTests {
    static let key = "dashboard-test-key"

    @Test("session cookies: signed, expiring, tied to the admin key; CSRF tokens tied to the session")
    func cookies() throws {
        let auth = UIAuth(apiKey: Self.key)
        let (value, session) = auth.newCookie()
        #expect(auth.session(cookieValue: value)?.nonce == session.nonce)
        #expect(auth.checkCSRF(session.csrf, session: session))
        #expect(!auth.checkCSRF(session.csrf + "0", session: session) && !auth.checkCSRF(nil, session: session))
        var tampered = Array(value)
        tampered[tampered.count - 1] = tampered.last == "0" ? "1" : "0"
        #expect(auth.session(cookieValue: String(tampered)) == nil)
        #expect(auth.session(cookieValue: value, now: Date().addingTimeInterval(UIAuth.lifetime + 1)) == nil)
        #expect(UIAuth(apiKey: "another key").session(cookieValue: value) == nil)
        #expect(UIAuth(apiKey: Self.key).session(cookieValue: value) != nil)
        let other = auth.newCookie().session
        #expect(!auth.checkCSRF(other.csrf, session: session))
        #expect(auth.session(cookieValue: "v1.99999999999.zz.zz") == nil && auth.session(cookieValue: "") == nil)
    }

    @Test("recall percentiles from the histogram, and the last hour by minute")
    func stats() {
        let stats = DashboardStats()
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        for index in 1...100 { stats.recordRecall(milliseconds: Double(index) / 10, memories: 2, tokens: 40, now: now) }
        stats.recordRecall(milliseconds: 1, memories: 1, tokens: 10, now: now.addingTimeInterval(-7200))
        stats.recordFailOpen(now: now)
        let (total, hour, minutes) = stats.snapshot(now: now)
        #expect(total.requests == 101 && hour.requests == 100 && hour.memories == 200 && hour.failOpen == 1)
        #expect(minutes.count == 60 && minutes.last?.requests == 100)
        let p50 = DashboardStats.percentile(hour, 0.5)
        let p99 = DashboardStats.percentile(hour, 0.99)
        #expect(p50 >= 5 && p50 <= 5 * 1.13)
        #expect(p99 >= 9.9 && p99 <= 9.9 * 1.13)
    }

    /// A logged-in cookie.
    func login(_ proxy: ProxyHarness) async throws -> String {
        let (response, _) = try await proxy.fetch(
            "POST", "/ui/login", headers: [("Content-Type", "application/x-www-form-urlencoded")],
            body: "key=\(Self.key)")
        #expect(response.status == 303)
        let cookie = try #require(response.header("Set-Cookie"))
        #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/ui"))
        return String(try #require(cookie.split(separator: ";").first))
    }

    func page(_ proxy: ProxyHarness, _ path: String, cookie: String) async throws -> (Int, String) {
        let (response, body) = try await proxy.fetch("GET", path, headers: [("Cookie", cookie)])
        return (response.status, body)
    }

    func csrf(_ html: String) throws -> String {
        let range = try #require(html.range(of: #"name="csrf" value=""#))
        return String(html[range.upperBound...].prefix { $0 != "\"" })
    }

    static func unescape(_ html: String) -> String {
        html.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&#39;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }

    @Test("with an admin key: login, every page, escaped content, CSRF on forms, delete through the form")
    func pagesWithKey() async throws {
        let store = try makeStore()
        try await withProxy(memoryStore: store, configure: { configuration, _ in
            configuration.admin.apiKey = Self.key
        }) { proxy in
            #expect(try await proxy.chat("My locker code is 4417", session: "alice/1").response.status == 200)
            _ = try await proxy.chat("What is my locker code?", session: "alice/1")
            let hostile = "<script>window.__pwned=1</script><b>bold</b>"
            let added = try await proxy.api(
                "POST", "/sessions/alice%2F1/memories", #"{"content":"\#(hostile)","type":"semantic"}"#,
                headers: [("Authorization", "Bearer \(Self.key)")])
            #expect(added.status == 201)
            await store.flush()

            let (anonymous, _) = try await proxy.fetch("GET", "/ui/sessions")
            #expect(anonymous.status == 303 && anonymous.header("Location") == "/ui/login")
            let (wrong, wrongBody) = try await proxy.fetch(
                "POST", "/ui/login", headers: [("Content-Type", "application/x-www-form-urlencoded")], body: "key=nope")
            #expect(wrong.status == 401 && wrongBody.contains("wrong key") && wrong.header("Set-Cookie") == nil)
            let cookie = try await login(proxy)

            for path in ["/ui", "/ui/sessions", "/ui/sessions?prefix=ali", "/ui/injections", "/ui/live"] {
                let (status, _) = try await page(proxy, path, cookie: cookie)
                #expect(status == 200, "\(path)")
            }
            let (_, sessions) = try await page(proxy, "/ui/sessions?prefix=alice", cookie: cookie)
            #expect(sessions.contains(#"data-session="alice/1""#) && sessions.contains("/ui/sessions/alice%2F1"))
            let (_, none) = try await page(proxy, "/ui/sessions?prefix=bob", cookie: cookie)
            #expect(!none.contains("data-session="))

            let (status, session) = try await page(proxy, "/ui/sessions/alice%2F1", cookie: cookie)
            #expect(status == 200 && session.contains("My locker code is 4417"))
            #expect(!session.contains("<script>window") && !session.contains("<b>bold"))
            #expect(session.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;"))

            // The preview is exactly the memory API's block.
            let (_, preview) = try await page(proxy, "/ui/sessions/alice%2F1/preview?query=locker+code", cookie: cookie)
            let recall = try jsonObject(
                try await proxy.api(
                    "POST", "/sessions/alice%2F1/recall", #"{"query":"locker code"}"#,
                    headers: [("Authorization", "Bearer \(Self.key)")]
                ).body)
            let block = try #require(preview.range(of: #"<pre id="preview-block">"#)).upperBound
            let shown = Self.unescape(String(preview[block...].prefix { $0 != "<" }))
            #expect(shown == recall["context"] as? String && shown.contains("4417"))

            // A form without its CSRF token changes nothing; with it, the memory is gone and never injected again.
            let memories = try store.memories(session: "alice/1")
            let target = try #require(memories.first { $0.content == "My locker code is 4417" })
            let deletePath = "/ui/sessions/alice%2F1/memories/\(target.id)/delete"
            let form = [("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", cookie)]
            let (refused, refusedBody) = try await proxy.fetch("POST", deletePath, headers: form, body: "csrf=forged")
            #expect(refused.status == 403 && refusedBody.contains("CSRF"))
            #expect(try store.memories(session: "alice/1").contains { $0.id == target.id })
            let (_, confirm) = try await page(proxy, deletePath, cookie: cookie)
            #expect(confirm.contains(#"id="confirm-delete""#))
            let (deleted, _) = try await proxy.fetch("POST", deletePath, headers: form, body: "csrf=\(try csrf(confirm))")
            #expect(deleted.status == 303)
            #expect(try !store.memories(session: "alice/1").contains { $0.id == target.id })

            // One injection's page: its block as recorded, the memories with their recorded scores.
            await store.flush()
            let records = try store.injections(session: "alice/1", limit: 5)
            let record = try #require(records.last)
            let (detailStatus, detail) = try await page(proxy, "/ui/injections/\(record.requestID)", cookie: cookie)
            #expect(detailStatus == 200 && detail.contains(#"id="injected-block""#) && detail.contains("replayed now"))
            #expect(detail.contains("(deleted since)"))

            let (_, withForm) = try await page(proxy, "/ui/sessions/alice%2F1", cookie: cookie)
            let (added2, _) = try await proxy.fetch(
                "POST", "/ui/sessions/alice%2F1/memories", headers: form,
                body: "csrf=\(try csrf(withForm))&content=Prefers+green+tea&type=semantic")
            #expect(added2.status == 303)
            #expect(try store.memories(session: "alice/1").contains { $0.content == "Prefers green tea" })
        }
    }

    @Test("without an admin key: loopback clients get a session cookie at once; ui.enabled = false serves nothing")
    func loopbackAndDisabled() async throws {
        try await withProxy(memoryStore: try makeStore()) { proxy in
            let (response, body) = try await proxy.fetch("GET", "/ui")
            #expect(response.status == 200 && body.contains(#"id="overview""#))
            #expect(response.header("Set-Cookie")?.hasPrefix("mp_ui=") == true)
            #expect(response.header("Content-Security-Policy")?.contains("default-src 'none'") == true)
        }
        try await withProxy(memoryStore: try makeStore(), configure: { configuration, _ in
            configuration.ui.enabled = false
        }) { proxy in
            let (response, _) = try await proxy.fetch("GET", "/ui")
            #expect(response.status == 404)
        }
    }
}
