import Foundation
import HTTPTypes
import Hummingbird
import MemProxyStore
import Mustache
import NIOCore

/// The web dashboard (`GET /ui` and below, `ui.enabled`): server-rendered pages over the memory API (the same
/// validation, scoping and ranking), the store's dashboard queries and the in-process ``DashboardStats``. Nothing
/// here runs on the proxy path: pages are rendered when someone asks for them, and the live view reads the injection
/// log only while someone watches. Paths, element ids and form fields: `docs/dashboard.md`.
struct Dashboard: Sendable {
    let api: MemoryAPI
    let store: any DashboardStore
    let stats: DashboardStats
    let auth: UIAuth
    /// The writer's backlog and error count now, when the store can tell.
    let storeHealth: @Sendable () -> (backlog: Int, errors: Int)?

    typealias Context = ProxyRequestContext

    /// Who is asking: a verified session (and the cookie to set when it was just made), or the response that refuses.
    enum Access {
        case allowed(UIAuth.Session, setCookie: String?)
        case refused(Response)
    }

    /// The memory API's rule: with `admin.api_key`, a logged-in session; without, loopback clients (each given a
    /// session on first visit, for CSRF tokens).
    func access(_ request: Request, _ context: Context) -> Access {
        let existing = auth.session(cookieValue: UIAuth.cookie(request))
        guard auth.apiKey != nil else {
            guard AdminAuth.isLoopback(context.remoteAddress) else {
                return .refused(
                    page(
                        "message", status: .forbidden,
                        [
                            "title": "Forbidden", "heading": "Loopback only", "isError": true,
                            "text":
                                "Without admin.api_key the dashboard answers only clients on this machine. Set admin.api_key (MEMPROXY_ADMIN_API_KEY) to log in from elsewhere.",
                        ], session: nil))
            }
            if let existing { return .allowed(existing, setCookie: nil) }
            let (value, session) = auth.newCookie()
            return .allowed(session, setCookie: UIAuth.setCookie(value))
        }
        if let existing { return .allowed(existing, setCookie: nil) }
        if request.method == .get || request.method == .head {
            return .refused(Self.redirect(to: "/ui/login"))
        }
        return .refused(
            page(
                "message", status: .unauthorized,
                ["title": "Log in", "heading": "Log in first", "isError": true, "text": "Your session has ended.",
                 "back": "/ui/login"], session: nil))
    }

    /// Runs `body` for an allowed request, setting the new session cookie on its response when one was made.
    func guarded(
        _ request: Request, _ context: Context, _ body: (UIAuth.Session) async throws -> Response
    ) async throws -> Response {
        switch access(request, context) {
        case .refused(let response):
            return response
        case .allowed(let session, let setCookie):
            var response: Response
            do {
                response = try await body(session)
            } catch let error as OpenAIError {
                response = page(
                    "message", status: error.status,
                    ["title": "Error", "heading": "Could not do that", "isError": true, "text": error.message],
                    session: session)
            }
            if let setCookie { response.headers[.setCookie] = setCookie }
            return response
        }
    }

    /// A POST's form fields after its CSRF token is checked; a 403 page when it is missing or wrong.
    func form(_ request: Request, session: UIAuth.Session) async throws -> [String: String]? {
        let bytes = try await request.body.collect(upTo: 1 << 20)
        let fields = Self.formFields(String(buffer: bytes))
        guard auth.checkCSRF(fields["csrf"], session: session) else { return nil }
        return fields
    }

    func csrfRefused(_ session: UIAuth.Session) -> Response {
        page(
            "message", status: .forbidden,
            [
                "title": "Refused", "heading": "Refused", "isError": true,
                "text": "This form's CSRF token is missing or wrong: reload the page and try again.",
            ], session: session)
    }

    // MARK: - Rendering

    /// Renders template `name` with `values` and the common parts (navigation, CSRF token) as a full page.
    func page(
        _ name: String, status: HTTPResponse.Status = .ok, _ values: [String: Any], session: UIAuth.Session?,
        navigation: Bool = true
    ) -> Response {
        var context = values
        context["style"] = UITemplates.style
        if navigation, session != nil || auth.apiKey == nil {
            context["nav"] = ["loggedIn": auth.apiKey != nil && session != nil, "csrf": session?.csrf ?? ""]
        }
        if let session { context["csrf"] = session.csrf }
        let html = UITemplates.library.render(context, withTemplate: name) ?? "template \(name) is missing"
        var headers: HTTPFields = [
            .contentType: "text/html; charset=utf-8",
            .cacheControl: "no-store",
        ]
        headers[HTTPField.Name("Content-Security-Policy")!] =
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static func redirect(to location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }

    // MARK: - Helpers

    /// `application/x-www-form-urlencoded` fields (the last value of a repeated name wins).
    static func formFields(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ part: Substring) -> String {
                String(part).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            fields[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return fields
    }

    /// The query string's fields, decoded as a form's (`+` is a space: what a `method="get"` form sends).
    static func query(_ request: Request) -> [String: String] {
        formFields(request.uri.query ?? "")
    }

    /// A path segment or query value, percent-encoded (everything but unreserved characters).
    static func encode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    static func sessionPath(_ session: String) -> String { "/ui/sessions/" + encode(session) }

    static func time(_ date: Date?) -> String {
        guard let date else { return "–" }
        return date.formatted(.iso8601)
    }

    static func number(_ value: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", value) }

    static func duration(_ seconds: TimeInterval) -> String {
        let total = Int(seconds)
        if total < 3600 { return "\(total / 60) min" }
        if total < 86_400 { return "\(total / 3600) h \(total % 3600 / 60) min" }
        return "\(total / 86_400) d \(total % 86_400 / 3600) h"
    }
}
