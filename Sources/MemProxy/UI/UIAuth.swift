import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The dashboard's access rule — the memory API's: with `admin.api_key` set, a login form takes the key and sets a
/// signed, expiring session cookie (`mp_ui`: `HttpOnly`, `SameSite=Strict`, `Path=/ui`); without a key, loopback
/// clients only, each given a cookie on first visit. Every form that changes something carries a CSRF token derived
/// from the cookie's nonce, checked on POST.
///
/// Cookie value: `v1.<expiry seconds>.<nonce hex>.<HMAC-SHA256 of the rest, hex>`. The signing key is derived from
/// `admin.api_key` (so sessions survive a restart and hold on every replica; changing the key ends them), or a
/// random key per process without one.
struct UIAuth: Sendable {
    let apiKey: String?
    private let signingKey: SymmetricKey

    static let cookieName = "mp_ui"
    static let lifetime: TimeInterval = 12 * 3600

    init(apiKey: String?) {
        self.apiKey = apiKey
        if let apiKey {
            signingKey = SymmetricKey(data: SHA256.hash(data: Data(("memproxy-ui-v1:" + apiKey).utf8)))
        } else {
            signingKey = SymmetricKey(size: .bits256)
        }
    }

    /// A verified session: its nonce (what CSRF tokens are derived from).
    struct Session: Sendable {
        var nonce: String
        var csrf: String
    }

    /// A new cookie value, valid for ``lifetime``.
    func newCookie(now: Date = Date()) -> (value: String, session: Session) {
        var bytes = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = generator.next() }
        let nonce = Self.hex(bytes)
        let payload = "v1.\(Int64(now.timeIntervalSince1970 + Self.lifetime)).\(nonce)"
        return (payload + "." + sign(payload), Session(nonce: nonce, csrf: csrfToken(nonce: nonce)))
    }

    /// The session a cookie value names, when it is well-formed, correctly signed and not expired.
    func session(cookieValue: String?, now: Date = Date()) -> Session? {
        guard let cookieValue else { return nil }
        let parts = cookieValue.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "v1", let expiry = Int64(parts[1]), parts[2].count == 32 else { return nil }
        let payload = parts[0..<3].joined(separator: ".")
        guard AdminAuth.constantTimeEquals(Array(sign(payload).utf8), Array(parts[3].utf8)) else { return nil }
        guard Double(expiry) > now.timeIntervalSince1970 else { return nil }
        let nonce = String(parts[2])
        return Session(nonce: nonce, csrf: csrfToken(nonce: nonce))
    }

    /// Whether `token` is the CSRF token of `session`.
    func checkCSRF(_ token: String?, session: Session) -> Bool {
        guard let token else { return false }
        return AdminAuth.constantTimeEquals(Array(token.utf8), Array(session.csrf.utf8))
    }

    /// Whether `presented` is the admin key (constant time).
    func isAdminKey(_ presented: String) -> Bool {
        guard let apiKey else { return false }
        return AdminAuth.constantTimeEquals(Array(presented.utf8), Array(apiKey.utf8))
    }

    /// `Set-Cookie` for a value (`nil`: delete it).
    static func setCookie(_ value: String?) -> String {
        guard let value else {
            return "\(cookieName)=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
        }
        return "\(cookieName)=\(value); Path=/ui; HttpOnly; SameSite=Strict; Max-Age=\(Int(lifetime))"
    }

    /// The `mp_ui` cookie of a request.
    static func cookie(_ request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " }
                guard let equals = trimmed.firstIndex(of: "=") else { continue }
                if trimmed[..<equals] == cookieName { return String(trimmed[trimmed.index(after: equals)...]) }
            }
        }
        return nil
    }

    private func sign(_ payload: String) -> String {
        Self.hex(Array(HMAC<SHA256>.authenticationCode(for: Data(payload.utf8), using: signingKey)))
    }

    private func csrfToken(nonce: String) -> String {
        sign("csrf." + nonce)
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
