import Foundation
import Hummingbird

/// Cookie names and attributes (SECURITY.md): `__Host-` prefix, Secure, HttpOnly, SameSite=Lax,
/// Path=/ — over plain http (a laptop on localhost) the prefix and Secure cannot work, so they
/// are dropped only then.
public struct CookiePolicy: Sendable {
    public let secure: Bool

    public init(publicURL: URL) {
        self.secure = publicURL.scheme?.lowercased() == "https"
    }

    var sessionName: String { self.secure ? "__Host-easel_session" : "easel_session" }
    var csrfName: String { self.secure ? "__Host-easel_csrf" : "easel_csrf" }

    func cookie(_ name: String, value: String, maxAge: Int?) -> Cookie {
        Cookie(name: name, value: value, maxAge: maxAge, path: "/", secure: self.secure, httpOnly: true, sameSite: .lax)
    }

    func session(_ token: String, maxAge: Int) -> Cookie { self.cookie(self.sessionName, value: token, maxAge: maxAge) }
    func clearedSession() -> Cookie { self.cookie(self.sessionName, value: "", maxAge: 0) }
    func csrf(_ token: String) -> Cookie { self.cookie(self.csrfName, value: token, maxAge: nil) }
}
