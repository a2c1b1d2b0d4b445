import EaselApp
import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite("JSON API /api/v1 and API keys")
struct APITests {
    // MARK: Helpers

    /// A confirmed account, made through the account service (as sign-up + the mailed code would).
    @discardableResult
    func makeAccount(_ services: AppServices, email: String = "ada@example.org", password: String = "correct horse battery") async throws -> User {
        try await services.accounts.signUp(.init(email: email, password: password, displayName: "Ada", ageConfirmed: true, termsAccepted: true))
        let mail = try #require(try await services.database.recentMails().first { $0.toEmail == email && $0.kind == "verify_email" })
        let code = try #require(mail.textBody.firstMatch(of: /code is (\d{6})/)?.1).description
        return try #require(try await services.accounts.verify(email: email, code: code))
    }

    /// A browser signed in to a fresh confirmed account.
    func signedIn(_ services: AppServices, _ client: any TestClientProtocol, email: String = "ada@example.org") async throws -> (Browser, User) {
        let user = try await self.makeAccount(services, email: email)
        let browser = Browser(client)
        try await browser.get("/signin")
        let response = try await browser.post("/signin", ["email": email, "password": "correct horse battery"])
        #expect(response.status == .seeOther)
        return (browser, user)
    }

    /// The CSRF token a page's forms carry, as a browser would send it back.
    func formToken(_ page: TestResponse) throws -> String {
        try #require(page.text.firstMatch(of: /name="_csrf" value="([^"]+)"/).map { String($0.1) })
    }

    func key(_ services: AppServices, for user: User, scopes: Set<APIScope>, expiresAt: Date? = nil, now: Date = Date()) async throws -> String {
        try await services.apiKeys.create(for: user, name: "test", scopes: scopes, expiresAt: expiresAt, now: now).secret
    }

    func call(
        _ client: any TestClientProtocol,
        _ method: HTTPRequest.Method,
        _ uri: String,
        key: String? = nil,
        json: String? = nil
    ) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if let key { headers[.authorization] = "Bearer \(key)" }
        if json != nil { headers[.contentType] = "application/json" }
        return try await client.execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
    }

    func object(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.text.utf8)) as? [String: Any], "not a JSON object: \(response.text)")
    }

    func error(_ response: TestResponse) throws -> (code: String, message: String) {
        let error = try #require(try self.object(response)["error"] as? [String: Any])
        return (try #require(error["code"] as? String), try #require(error["message"] as? String))
    }

    // MARK: Authentication and scopes

    @Test("GET /api/v1/me with a read key answers the account, uncached")
    func meWithKey() async throws {
        try await withTestApp { services, client in
            let user = try await self.makeAccount(services)
            let key = try await self.key(services, for: user, scopes: [.read])
            let response = try await self.call(client, .get, "/api/v1/me", key: key)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
            #expect(response.headers[.cacheControl] == "no-store")
            let me = try self.object(response)
            #expect(me["id"] as? Int == Int(user.id!))
            #expect(me["email"] as? String == "ada@example.org")
            #expect(me["display_name"] as? String == "Ada")
            #expect(me["role"] as? String == "admin", "the first account is the admin")
            #expect(me["language"] is NSNull, "an unset language is null, not missing")
            #expect(me["theme"] as? String == "system")
            #expect(me["email_verified"] as? Bool == true)
            #expect(me["two_factor"] as? Bool == false)
            let created = try #require(me["created_at"] as? String)
            #expect(ISO8601DateFormatter().date(from: created) != nil)

            // An account-only key may read /me too; a generate-only key may not.
            let accountKey = try await self.key(services, for: user, scopes: [.account])
            #expect(try await self.call(client, .get, "/api/v1/me", key: accountKey).status == .ok)
            let generateKey = try await self.key(services, for: user, scopes: [.generate])
            let refused = try await self.call(client, .get, "/api/v1/me", key: generateKey)
            #expect(refused.status == .forbidden)
            #expect(try self.error(refused).message.contains("\"read\""))
        }
    }

    @Test("A key without the account scope gets 403 insufficient_scope naming the scope")
    func missingScope() async throws {
        try await withTestApp { services, client in
            let user = try await self.makeAccount(services)
            let key = try await self.key(services, for: user, scopes: [.generate, .read])
            let response = try await self.call(client, .patch, "/api/v1/me", key: key, json: #"{"display_name":"Mallory"}"#)
            #expect(response.status == .forbidden)
            let error = try self.error(response)
            #expect(error.code == "insufficient_scope")
            #expect(error.message.contains("lacks the \"account\" scope"), "\(error.message)")
            #expect(response.headers[.wwwAuthenticate]?.contains(#"error="insufficient_scope""#) == true)
            #expect(try await services.database.user(id: user.id!)?.displayName == "Ada", "nothing changed")
            for (method, uri) in [(HTTPRequest.Method.get, "/api/v1/keys"), (.get, "/api/v1/sessions"), (.delete, "/api/v1/keys/1")] {
                let other = try await self.call(client, method, uri, key: key)
                #expect(other.status == .forbidden, "\(method) \(uri)")
            }
        }
    }

    @Test("Without credentials the API answers 401 with WWW-Authenticate: Bearer; a malformed or unknown key gets 401 too")
    func noCredentials() async throws {
        try await withTestApp { services, client in
            let response = try await self.call(client, .get, "/api/v1/me")
            #expect(response.status == .unauthorized)
            #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
            #expect(try self.error(response).code == "unauthorized")
            for authorization in ["Bearer nonsense", "Bearer easel_abcdefgh_" + String(repeating: "A", count: 43), "Basic YWRhOnB3", "Bearer"] {
                let bad = try await client.execute(uri: "/api/v1/me", method: .get, headers: [.authorization: authorization])
                #expect(bad.status == .unauthorized, "\(authorization)")
                #expect(bad.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                #expect(try self.error(bad).code == "invalid_api_key")
            }
        }
    }

    @Test("Revoked and expired keys get 401")
    func revokedAndExpiredKeys() async throws {
        try await withTestApp { services, client in
            let user = try await self.makeAccount(services)
            let now = Date()
            let expired = try await self.key(
                services,
                for: user,
                scopes: [.read],
                expiresAt: now.addingTimeInterval(-60),
                now: now.addingTimeInterval(-3600)
            )
            let response = try await self.call(client, .get, "/api/v1/me", key: expired)
            #expect(response.status == .unauthorized)
            #expect(try self.error(response).code == "invalid_api_key")

            // Revoked through the API with another key of the same account.
            let doomed = try await services.apiKeys.create(for: user, name: "doomed", scopes: [.read], expiresAt: nil)
            let admin = try await self.key(services, for: user, scopes: [.account])
            #expect(try await self.call(client, .get, "/api/v1/me", key: doomed.secret).status == .ok)
            let revoke = try await self.call(client, .delete, "/api/v1/keys/\(doomed.key.id!)", key: admin)
            #expect(revoke.status == .noContent)
            #expect(try await self.call(client, .get, "/api/v1/me", key: doomed.secret).status == .unauthorized)
            #expect(try await self.call(client, .delete, "/api/v1/keys/\(doomed.key.id!)", key: admin).status == .notFound)
        }
    }

    @Test("With the session cookie, PATCH /me needs X-CSRF-Token: 403 without it, 200 with it")
    func cookieNeedsCSRF() async throws {
        try await withTestApp { services, client in
            let (browser, user) = try await self.signedIn(services, client)
            let csrf = try #require(try await services.database.sessions(userID: user.id!).first?.csrfToken)
            let body = ByteBuffer(string: #"{"display_name":"Ada Lovelace","theme":"dark","language":"es"}"#)

            let refused = try await browser.send("/api/v1/me", method: .patch, headers: [.contentType: "application/json"], body: body)
            #expect(refused.status == .forbidden)
            #expect(try self.error(refused).code == "csrf_failed")
            #expect(try await services.database.user(id: user.id!)?.displayName == "Ada")

            let accepted = try await browser.send(
                "/api/v1/me",
                method: .patch,
                headers: [.contentType: "application/json", HTTPField.Name("X-CSRF-Token")!: csrf],
                body: body
            )
            #expect(accepted.status == .ok)
            let me = try self.object(accepted)
            #expect(me["display_name"] as? String == "Ada Lovelace")
            #expect(me["theme"] as? String == "dark")
            #expect(me["language"] as? String == "es")
            let stored = try #require(try await services.database.user(id: user.id!))
            #expect(stored.displayName == "Ada Lovelace")
            #expect(stored.theme == .dark)

            // Reads need no token; the session list marks this session as current.
            let sessions = try await browser.get("/api/v1/sessions")
            #expect(sessions.status == .ok)
            let list = try #require(try self.object(sessions)["sessions"] as? [[String: Any]])
            #expect(list.count == 1)
            #expect(list.first?["current"] as? Bool == true)
            #expect(list.first?["device"] is String)
        }
    }

    @Test("PATCH /me refuses bad values with 422 naming the field, and null language clears it")
    func profileValidation() async throws {
        try await withTestApp { services, client in
            let user = try await self.makeAccount(services)
            let key = try await self.key(services, for: user, scopes: [.account])
            let cases: [(String, String)] = [
                (#"{"display_name":"\#(String(repeating: "x", count: 81))"}"#, "display_name"),
                (#"{"display_name":5}"#, "display_name"),
                (#"{"language":"fr"}"#, "language"),
                (#"{"theme":"blue"}"#, "theme"),
            ]
            for (json, field) in cases {
                let response = try await self.call(client, .patch, "/api/v1/me", key: key, json: json)
                #expect(response.status == .unprocessableContent, "\(json)")
                #expect(try self.error(response).message.contains(field), "\(json): \(response.text)")
            }
            #expect(try await self.call(client, .patch, "/api/v1/me", key: key, json: "not json").status == .badRequest)
            _ = try await self.call(client, .patch, "/api/v1/me", key: key, json: #"{"language":"zh-Hans"}"#)
            #expect(try await services.database.user(id: user.id!)?.language == "zh-Hans")
            let cleared = try await self.call(client, .patch, "/api/v1/me", key: key, json: #"{"language":null}"#)
            #expect(cleared.status == .ok)
            #expect(try self.object(cleared)["language"] is NSNull)
            #expect(try await services.database.user(id: user.id!)?.displayName == "Ada", "absent fields stay as they were")
        }
    }

    // MARK: Keys

    @Test("POST /api/v1/keys answers the key once; the list never contains it")
    func keyListNeverHasTheSecret() async throws {
        try await withTestApp { services, client in
            let user = try await self.makeAccount(services)
            let key = try await self.key(services, for: user, scopes: [.read, .account])
            let created = try await self.call(
                client,
                .post,
                "/api/v1/keys",
                key: key,
                json: #"{"name":"nightly","scopes":["read"],"expires_in_days":30}"#
            )
            #expect(created.status == .created)
            let body = try self.object(created)
            let secret = try #require(body["key"] as? String)
            let prefix = try #require(body["prefix"] as? String)
            #expect(secret.hasPrefix(prefix + "_"))
            #expect(body["scopes"] as? [String] == ["read"])
            #expect(body["expires_at"] is String)
            #expect(try await self.call(client, .get, "/api/v1/me", key: secret).status == .ok)

            let list = try await self.call(client, .get, "/api/v1/keys", key: key)
            #expect(list.status == .ok)
            let secretPart = String(secret.split(separator: "_").last!)
            let keyPart = String(key.split(separator: "_").last!)
            #expect(!list.text.contains(secretPart))
            #expect(!list.text.contains(keyPart))
            let keys = try #require(try self.object(list)["keys"] as? [[String: Any]])
            #expect(keys.count == 2)
            #expect(keys.contains { $0["prefix"] as? String == prefix && $0["name"] as? String == "nightly" })
            #expect(keys.allSatisfy { $0["key"] == nil })
            #expect(keys.allSatisfy { $0.keys.contains("last_used_at") && $0.keys.contains("expires_at") && $0.keys.contains("created_at") })
        }
    }

    @Test("A key cannot create a key with scopes it lacks; bad names and scopes get 422")
    func keyCreationRules() async throws {
        try await withTestApp { services, client in
            let user = try await self.makeAccount(services)
            let key = try await self.key(services, for: user, scopes: [.account])
            let escalate = try await self.call(client, .post, "/api/v1/keys", key: key, json: #"{"name":"x","scopes":["generate"]}"#)
            #expect(escalate.status == .forbidden)
            #expect(try self.error(escalate).message.contains("\"generate\""))
            let unknown = try await self.call(client, .post, "/api/v1/keys", key: key, json: #"{"name":"x","scopes":["paint"]}"#)
            #expect(unknown.status == .unprocessableContent)
            #expect(try self.error(unknown).message.contains("paint"))
            let unnamed = try await self.call(client, .post, "/api/v1/keys", key: key, json: #"{"scopes":["account"]}"#)
            #expect(unnamed.status == .unprocessableContent)
            #expect(try self.error(unnamed).message.contains("name"))
            let badExpiry = try await self.call(
                client,
                .post,
                "/api/v1/keys",
                key: key,
                json: #"{"name":"x","scopes":["account"],"expires_in_days":0}"#
            )
            #expect(badExpiry.status == .unprocessableContent)
            #expect(try self.error(badExpiry).message.contains("expires_in_days"))
            #expect(try await services.apiKeys.keys(for: user).count == 1)
        }
    }

    @Test("DELETE /api/v1/sessions/{id} signs out one's own session and answers 404 for another's")
    func deleteSessions() async throws {
        try await withTestApp { services, client in
            let (browser, ada) = try await self.signedIn(services, client)
            let (_, eve) = try await self.signedIn(services, client, email: "eve@example.org")
            let adaSession = try #require(try await services.database.sessions(userID: ada.id!).first?.id)
            let eveKey = try await self.key(services, for: eve, scopes: [.account])
            #expect(try await self.call(client, .delete, "/api/v1/sessions/\(adaSession)", key: eveKey).status == .notFound)
            #expect(try await browser.get("/account").status == .ok, "Ada is still signed in")

            let adaKey = try await self.key(services, for: ada, scopes: [.account])
            let listed = try await self.call(client, .get, "/api/v1/sessions", key: adaKey)
            let sessions = try #require(try self.object(listed)["sessions"] as? [[String: Any]])
            #expect(sessions.map { $0["id"] as? Int } == [Int(adaSession)])
            #expect(sessions.first?["current"] as? Bool == false, "a key is no session")
            #expect(try await self.call(client, .delete, "/api/v1/sessions/\(adaSession)", key: adaKey).status == .noContent)
            #expect(try await browser.get("/account").status == .seeOther, "signed out")
        }
    }

    // MARK: The page

    @Test("The API keys page creates a key, shows it once, lists it by prefix and revokes it")
    func keysPage() async throws {
        try await withTestApp { services, client in
            let (browser, _) = try await self.signedIn(services, client)
            let account = try await browser.get("/account")
            #expect(account.text.contains(#"href="/account/keys""#))
            let empty = try await browser.get("/account/keys")
            #expect(empty.status == .ok)
            #expect(empty.text.contains("You have no API keys."))
            let csrf = try self.formToken(empty)

            let created = try await browser.post(
                "/account/keys",
                ["name": "laptop script", "scope_read": "on", "scope_generate": "on", "expires_in_days": "7"],
                csrf: csrf
            )
            #expect(created.status == .ok)
            let secret = try #require(created.text.firstMatch(of: /easel_[a-z0-9]{8}_[A-Za-z0-9]{43}/).map { String($0.output) })
            #expect(created.text.contains("shown only this once"))
            let me = try await self.call(client, .get, "/api/v1/me", key: secret)
            #expect(me.status == .ok)

            let again = try await browser.get("/account/keys")
            let prefix = try #require(APIKeyService.prefix(of: secret))
            #expect(again.text.contains(prefix))
            #expect(again.text.contains("laptop script"))
            #expect(again.text.contains("generate, read"))
            #expect(!again.text.contains(String(secret.split(separator: "_").last!)), "the key is not shown again")

            let refused = try await browser.post("/account/keys", ["name": "no scopes"], csrf: csrf)
            #expect(refused.status == .unprocessableContent)
            #expect(refused.text.contains("Choose at least one scope"))
            #expect(refused.text.firstMatch(of: /easel_[a-z0-9]{8}_[A-Za-z0-9]{43}/) == nil)

            let ada = try #require(try await services.database.user(email: "ada@example.org"))
            let id = try #require(try await services.apiKeys.keys(for: ada).first?.id)
            let revoked = try await browser.post("/account/keys/\(id)/revoke", [:], csrf: csrf)
            #expect(revoked.status == .seeOther)
            #expect(try await self.call(client, .get, "/api/v1/me", key: secret).status == .unauthorized)
            #expect(try await browser.get("/account/keys").text.contains("You have no API keys."))
        }
    }

    @Test("The API keys page needs a signed-in person, and its forms the CSRF token")
    func keysPageNeedsSignIn() async throws {
        try await withTestApp { services, client in
            let anonymous = Browser(client)
            let page = try await anonymous.get("/account/keys")
            #expect(page.status == .seeOther)
            #expect(page.headers[.location]?.hasPrefix("/signin") == true)

            let (browser, user) = try await self.signedIn(services, client)
            let forged = try await browser.post("/account/keys", ["name": "x", "scope_read": "on"], csrf: "forged-token-value-forged-token-value")
            #expect(forged.status == .forbidden)
            #expect(try await services.apiKeys.keys(for: user).isEmpty)
        }
    }
}
