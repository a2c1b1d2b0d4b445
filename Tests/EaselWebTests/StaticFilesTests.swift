import CompressNIO
import EaselTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite("Static files")
struct StaticFilesTests {
    @Test("Static files come with ETag, Last-Modified and Cache-Control, and 304 on If-None-Match")
    func conditionalRequests() async throws {
        try await withTestApp { _, client in
            let first = try await client.execute(uri: "/static/app.css", method: .get)
            #expect(first.status == .ok)
            #expect(first.headers[.contentType] == "text/css; charset=utf-8")
            let etag = try #require(first.headers[.eTag])
            let lastModified = try #require(first.headers[.lastModified])
            #expect(first.headers[.cacheControl] == "public, max-age=3600")
            #expect(first.text.contains("--accent"))

            let revalidated = try await client.execute(uri: "/static/app.css", method: .get, headers: [.ifNoneMatch: etag])
            #expect(revalidated.status == .notModified)
            #expect(revalidated.body.readableBytes == 0)
            #expect(revalidated.headers[.eTag] == etag)

            let changed = try await client.execute(uri: "/static/app.css", method: .get, headers: [.ifNoneMatch: "\"something-else\""])
            #expect(changed.status == .ok)

            let sinceDate = try await client.execute(uri: "/static/app.css", method: .get, headers: [.ifModifiedSince: lastModified])
            #expect(sinceDate.status == .notModified)
        }
    }

    @Test("Versioned URLs from the templates are cached for a year")
    func versionedURLsAreImmutable() async throws {
        try await withTestApp { _, client in
            let home = try await client.execute(uri: "/", method: .get).text
            let range = try #require(home.range(of: #"/static/app\.css\?v=[0-9a-f]+"#, options: .regularExpression))
            let versioned = try await client.execute(uri: String(home[range]), method: .get)
            #expect(versioned.status == .ok)
            #expect(versioned.headers[.cacheControl] == "public, max-age=31536000, immutable")
            let stale = try await client.execute(uri: "/static/app.css?v=0000000000", method: .get)
            #expect(stale.headers[.cacheControl] == "public, max-age=3600")
        }
    }

    @Test("Static text is served pre-compressed to gzip clients")
    func gzipStatic() async throws {
        try await withTestApp { _, client in
            let plain = try await client.execute(uri: "/static/app.css", method: .get)
            let zipped = try await client.execute(uri: "/static/app.css", method: .get, headers: [.acceptEncoding: "gzip"])
            #expect(zipped.headers[.contentEncoding] == "gzip")
            #expect(zipped.headers[.eTag] == plain.headers[.eTag])
            var body = zipped.body
            #expect(try body.decompress(with: .gzip()) == plain.body)
        }
    }

    @Test("Missing files and paths that try to leave the folder are 404")
    func missingAndTraversal() async throws {
        try await withTestApp { _, client in
            for path in ["/static/missing.css", "/static/../Package.swift", "/static/%2e%2e/Package.swift", "/static/"] {
                let response = try await client.execute(uri: path, method: .get)
                #expect(response.status == .notFound, "\(path)")
            }
        }
    }

    @Test("With EASEL_DEV_ASSETS, files and templates are read from disk on every request")
    func devAssetsFromDisk() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let root = Checkout.root
        try FileManager.default.copyItem(at: root.appending(path: "static"), to: folder.url.appending(path: "static"))
        try FileManager.default.copyItem(at: root.appending(path: "templates"), to: folder.url.appending(path: "templates"))
        try await withTestApp(["EASEL_DEV_ASSETS": "true", "EASEL_ASSETS_DIR": folder.url.path]) { _, client in
            #expect(try await client.execute(uri: "/static/new.css", method: .get).status == .notFound)
            try "body{color:red}".write(to: folder.url.appending(path: "static/new.css"), atomically: true, encoding: .utf8)
            let added = try await client.execute(uri: "/static/new.css", method: .get)
            #expect(added.status == .ok)
            #expect(added.text == "body{color:red}")

            let template = folder.url.appending(path: "templates/home.mustache")
            try "{{<layout}}{{$body}}<p>edited live</p>{{/body}}{{/layout}}".write(to: template, atomically: true, encoding: .utf8)
            #expect(try await client.execute(uri: "/", method: .get).text.contains("edited live"))
        }
    }
}
