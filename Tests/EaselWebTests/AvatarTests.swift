import EaselApp
import EaselBlobs
import EaselCore
import EaselImages
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOFoundationCompat
import Testing

/// Hand-made picture bytes for the avatar tests.
enum AvatarFixtures {
    /// A width x height PNG gradient with a tEXt chunk carrying `comment`, right after IHDR.
    static func png(width: Int = 300, height: Int = 200, comment: String = "secret-camera-metadata") throws -> Data {
        var pixels = [UInt8]()
        for y in 0..<height {
            for x in 0..<width { pixels += [UInt8(x * 255 / (width - 1)), UInt8(y * 255 / (height - 1)), 90] }
        }
        let plain = try ImageLibrary().encode(rgb: pixels, width: width, height: height, as: .png)
        // Signature (8) + IHDR chunk (4 + 4 + 13 + 4).
        let afterHeader = 8 + 25
        return plain.prefix(afterHeader) + self.chunk("tEXt", Array("Comment".utf8) + [0] + Array(comment.utf8)) + plain.dropFirst(afterHeader)
    }

    /// A "pixel bomb": a well-formed PNG whose IHDR claims `width` x `height`, with a tiny IDAT.
    static func pngBomb(width: UInt32, height: UInt32) -> Data {
        let ihdr = self.bigEndian(width) + self.bigEndian(height) + [8, 2, 0, 0, 0]
        // zlib, one stored block of four zero bytes, then their Adler-32.
        let idat: [UInt8] = [0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF, 0, 0, 0, 0] + self.bigEndian(0x0004_0001)
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) + self.chunk("IHDR", ihdr) + self.chunk("IDAT", idat) + self.chunk("IEND", [])
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> Data {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return Data(self.bigEndian(UInt32(data.count)) + body + self.bigEndian(~crc))
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }
}

extension Data {
    func containsUTF8(_ string: String) -> Bool { self.range(of: Data(string.utf8)) != nil }
}

@Suite("Avatars: upload, removal and who may see them")
struct AvatarTests {
    let people = AdminAndProfileTests()

    /// Posts the profile page's avatar form (multipart, token first, as a browser sends it).
    @discardableResult
    func upload(_ browser: Browser, _ data: Data, csrf: String?) async throws -> TestResponse {
        let boundary = "easel-avatar-\(UUID().uuidString)"
        var body = ByteBuffer()
        if let csrf {
            body.writeString("--\(boundary)\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\n\(csrf)\r\n")
        }
        body.writeString("--\(boundary)\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"me\"\r\n")
        // Browsers send what the file's name suggests; the server looks only at the bytes.
        body.writeString("Content-Type: image/png\r\n\r\n")
        body.writeBytes(data)
        body.writeString("\r\n--\(boundary)--\r\n")
        var headers: HTTPFields = [.contentType: "multipart/form-data; boundary=\(boundary)"]
        headers[.origin] = browser.origin
        return try await browser.send("/account/avatar", method: .post, headers: headers, body: body)
    }

    func avatarKey(_ services: AppServices, _ user: User) async throws -> String? {
        try await services.database.user(id: user.id!)?.avatarKey
    }

    @Test("An uploaded picture becomes a small WebP avatar without metadata, shown in the header and replaced cleanly")
    func uploadAndReplace() async throws {
        try await withTestApp { services, client in
            let (browser, user) = try await self.people.signedIn(services, client, email: "ada@example.org")
            let token = try await self.people.csrf(services, user)
            let before = try await browser.get("/account/profile")
            #expect(!before.text.contains("/avatars/\(user.id!)"), "no picture yet: initials stand in")

            let saved = try await self.upload(browser, try AvatarFixtures.png(), csrf: token)
            #expect(saved.status == .seeOther)
            #expect(saved.headers[.location] == "/account/profile?avatar=saved")
            let key = try #require(try await self.avatarKey(services, user))
            #expect(key.hasPrefix("avatars/u\(user.id!)/"))
            #expect(key.hasSuffix(".webp"))

            let page = try await browser.get("/account/profile?avatar=saved")
            #expect(page.text.contains("Your picture is saved."))
            #expect(page.text.contains("src=\"/avatars/\(user.id!)?v=\(AvatarService.version(of: key))\""))
            #expect(try await browser.get("/account").text.contains("class=\"avatar\" src=\"/avatars/\(user.id!)?v="), "the header shows it")

            let served = try await browser.get("/avatars/\(user.id!)")
            #expect(served.status == .ok)
            #expect(served.headers[.contentType] == "image/webp")
            #expect(served.headers[.cacheControl]?.hasPrefix("private") == true)
            let etag = try #require(served.headers[.eTag])
            let bytes = Data(buffer: served.body)
            let info = try ImageLibrary().inspect(bytes)
            #expect(info.format == .webp)
            #expect(max(info.width, info.height) == AvatarService.maximumEdge)
            #expect(!bytes.containsUTF8("secret-camera-metadata"))
            #expect(try await browser.get("/avatars/\(user.id!)", headers: [.ifNoneMatch: etag]).status == .notModified)

            // A new picture replaces the old one, whose blob is deleted.
            #expect(try await self.upload(browser, try AvatarFixtures.png(width: 80, height: 120), csrf: token).status == .seeOther)
            let newKey = try #require(try await self.avatarKey(services, user))
            #expect(newKey != key)
            #expect(try await services.blobs.head(try BlobKey(key)) == nil)
            #expect(try await services.blobs.list(prefix: AvatarService.keyPrefix(userID: user.id!)).map(\.key.rawValue) == [newKey])
            let second = try await browser.get("/avatars/\(user.id!)", headers: [.ifNoneMatch: etag])
            #expect(second.status == .ok, "a new picture has a new ETag")
            #expect(try ImageLibrary().inspect(Data(buffer: second.body)).height == 120, "small pictures are not enlarged")

            // Removing it leaves initials, and nothing in storage.
            let removed = try await browser.post("/account/avatar/remove", [:], csrf: token)
            #expect(removed.headers[.location] == "/account/profile?avatar=removed")
            #expect(try await self.avatarKey(services, user) == nil)
            #expect(try await services.blobs.list(prefix: AvatarService.keyPrefix(userID: user.id!)).isEmpty)
            #expect(try await browser.get("/avatars/\(user.id!)").status == .notFound)
        }
    }

    @Test("Files that are not usable pictures, or carry no token, are refused with a reason and the old avatar stays")
    func refusals() async throws {
        try await withTestApp { services, client in
            let (browser, user) = try await self.people.signedIn(services, client, email: "ada@example.org")
            let token = try await self.people.csrf(services, user)
            try await self.upload(browser, try AvatarFixtures.png(), csrf: token)
            let key = try #require(try await self.avatarKey(services, user))
            let png = try AvatarFixtures.png()

            let cases: [(String, Data, HTTPResponse.Status, String)] = [
                ("text", Data("just some notes, not a picture\n".utf8), .unsupportedMediaType, "This file is not a picture."),
                ("truncated", png.prefix(png.count / 2), .unprocessableContent, "damaged or incomplete"),
                ("pixel bomb", AvatarFixtures.pngBomb(width: 30_000, height: 30_000), .unprocessableContent, "too many pixels"),
                ("gif", Data("GIF89a".utf8) + Data(repeating: 0, count: 32), .unsupportedMediaType, "not supported"),
                ("empty", Data(), .unprocessableContent, "Choose a picture first."),
                ("too large", png.prefix(8) + Data(repeating: 0, count: AvatarService.maximumUploadBytes), .contentTooLarge, "up to 10 MB"),
            ]
            for (name, data, status, message) in cases {
                let refused = try await self.upload(browser, data, csrf: token)
                #expect(refused.status == status, "\(name)")
                #expect(refused.text.contains(message), "\(name): \(refused.text.prefix(200))")
                #expect(try await self.avatarKey(services, user) == key, "\(name) leaves the avatar")
            }

            // Far past the limit the form is not even read: refused before any decoding.
            let huge = try await self.upload(browser, Data(repeating: 0x41, count: AvatarService.maximumUploadBytes + 200_000), csrf: token)
            #expect(huge.status == .contentTooLarge)
            #expect(huge.text.contains("larger than 10 MB"))

            let forged = try await self.upload(browser, png, csrf: nil)
            #expect(forged.status == .forbidden)
            let wrong = try await self.upload(browser, png, csrf: "not-the-token")
            #expect(wrong.status == .forbidden)

            #expect(try await self.avatarKey(services, user) == key)
            #expect(try await services.blobs.list(prefix: AvatarService.keyPrefix(userID: user.id!)).map(\.key.rawValue) == [key], "no leftovers")
        }
    }

    @Test("An avatar is seen by its owner and by admins; other members get 404 and visitors must sign in")
    func whoMaySee() async throws {
        try await withTestApp { services, client in
            let (admin, adminUser) = try await self.people.signedIn(services, client, email: "ada@example.org")
            let (bob, bobUser) = try await self.people.signedIn(services, client, email: "bob@example.org")
            let (carol, _) = try await self.people.signedIn(services, client, email: "carol@example.org")
            #expect(adminUser.role == .admin)
            #expect(bobUser.role == .member)
            try await self.upload(bob, try AvatarFixtures.png(), csrf: try await self.people.csrf(services, bobUser))
            try await self.upload(admin, try AvatarFixtures.png(), csrf: try await self.people.csrf(services, adminUser))
            let bobs = "/avatars/\(bobUser.id!)"

            #expect(try await bob.get(bobs).status == .ok)
            #expect(try await admin.get(bobs).status == .ok)
            #expect(try await carol.get(bobs).status == .notFound)
            #expect(try await bob.get("/avatars/\(adminUser.id!)").status == .notFound)

            let visitor = Browser(client)
            let redirected = try await visitor.get(bobs)
            #expect(redirected.status == .seeOther)
            #expect(redirected.headers[.location]?.hasPrefix("/signin") == true)
            #expect(try await visitor.get(bobs, headers: [.accept: "application/json"]).status == .unauthorized)
        }
    }

    /// `avatar_url` from `GET /api/v1/me`, called with the session cookie as the pages' scripts do.
    func apiAvatarURL(_ browser: Browser) async throws -> Any? {
        let me = try await browser.get("/api/v1/me", headers: [.accept: "application/json"])
        #expect(me.status == .ok)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(buffer: me.body)) as? [String: Any])
        #expect(object.keys.contains("avatar_url"), "the key is there even without a picture")
        return object["avatar_url"]
    }

    @Test("GET /api/v1/me answers avatar_url: null without a picture, the page's URL once one is uploaded")
    func apiAvatarURL() async throws {
        try await withTestApp { services, client in
            let (browser, user) = try await self.people.signedIn(services, client, email: "ada@example.org")
            #expect(try await self.apiAvatarURL(browser) is NSNull)

            try await self.upload(browser, try AvatarFixtures.png(), csrf: try await self.people.csrf(services, user))
            let key = try #require(try await self.avatarKey(services, user))
            let url = try #require(try await self.apiAvatarURL(browser) as? String)
            #expect(url == "/avatars/\(user.id!)?v=\(AvatarService.version(of: key))")
            #expect(try await browser.get(url).status == .ok, "the URL serves the picture")

            try await browser.post("/account/avatar/remove", [:], csrf: try await self.people.csrf(services, user))
            #expect(try await self.apiAvatarURL(browser) is NSNull)
        }
    }

    @Test("The admin users list shows each person's avatar, or their initial without one")
    func adminListShowsAvatars() async throws {
        try await withTestApp { services, client in
            let (admin, adminUser) = try await self.people.signedIn(services, client, email: "ada@example.org")
            let (bob, bobUser) = try await self.people.signedIn(services, client, email: "bob@example.org")
            #expect(adminUser.role == .admin)
            try await self.upload(bob, try AvatarFixtures.png(), csrf: try await self.people.csrf(services, bobUser))
            let key = try #require(try await self.avatarKey(services, bobUser))

            let list = try await admin.get("/admin/users")
            #expect(list.status == .ok)
            let bobsPicture = "<img class=\"avatar\" src=\"/avatars/\(bobUser.id!)?v=\(AvatarService.version(of: key))\""
            #expect(list.text.contains(bobsPicture))
            #expect(!list.text.contains("src=\"/avatars/\(adminUser.id!)"), "no picture for Ada")
            #expect(list.text.contains("<span class=\"avatar\" aria-hidden=\"true\">A</span><a href=\"/admin/users/\(adminUser.id!)\">"))
            #expect(try await admin.get("/avatars/\(bobUser.id!)").status == .ok, "admins may load it")
            let detail = try await admin.get("/admin/users/\(bobUser.id!)")
            #expect(detail.text.contains("src=\"/avatars/\(bobUser.id!)?v=\(AvatarService.version(of: key))\""))
        }
    }
}
