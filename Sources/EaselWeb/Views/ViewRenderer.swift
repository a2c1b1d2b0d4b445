import EaselStore
import Foundation
import Hummingbird
import Mustache
import NIOCore

/// What a page needs from the request it answers.
protocol PageContext {
    var cspNonce: String { get }
    var csrfToken: String { get }
    var signedInUser: User? { get }
}

extension AppRequestContext: PageContext {
    var signedInUser: User? { self.identity?.user }
}

extension SignedInContext: PageContext {
    var signedInUser: User? { self.identity.user }
}

/// What every page's layout needs.
struct LayoutData: Sendable {
    var siteName: String
    var title: String
    var cspNonce: String
    var csrfToken: String
    var stylesheetURL: String
    var scriptURL: String
    var iconURL: String
    var year: Int
    var signedIn: Bool
    var userName: String
    var isAdmin: Bool
    /// "Sign in with Google" when an OpenID Connect provider is configured.
    var externalSignIn: String?
    /// light, dark or system (follow the device).
    var theme: String
}

/// Renders typed view models with the mustache templates (HTML-escaped by default).
public struct ViewRenderer: Sendable {
    let assets: AssetCatalog
    let siteName: String
    let externalSignInLabel: String?

    public init(assets: AssetCatalog, siteName: String, externalSignInLabel: String? = nil) {
        self.assets = assets
        self.siteName = siteName
        self.externalSignInLabel = externalSignInLabel
    }

    func layout(title: String, context: some PageContext) -> LayoutData {
        let user = context.signedInUser
        return LayoutData(
            siteName: self.siteName,
            title: title == self.siteName ? title : "\(title) · \(self.siteName)",
            cspNonce: context.cspNonce,
            csrfToken: context.csrfToken,
            stylesheetURL: self.assets.url("app.css"),
            scriptURL: self.assets.url("app.js"),
            iconURL: self.assets.url("icon.svg"),
            year: Calendar(identifier: .gregorian).component(.year, from: Date()),
            signedIn: user != nil,
            userName: user.map { $0.displayName.isEmpty ? $0.email : $0.displayName } ?? "",
            isAdmin: user?.role == .admin,
            externalSignIn: self.externalSignInLabel,
            theme: user?.theme.rawValue ?? "system"
        )
    }

    func render(_ view: some Sendable, template: String, status: HTTPResponse.Status = .ok) throws -> Response {
        let library = try self.assets.templates()
        guard let html = library.render(view, withTemplate: template) else {
            throw WebError(.internalServerError, code: "template_missing", message: "The page template \"\(template)\" is missing from this build.")
        }
        return Response(
            status: status,
            headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: html))
        )
    }
}

struct ErrorPage: Sendable {
    var layout: LayoutData
    var status: Int
    var heading: String
    var message: String
    var requestID: String
}
