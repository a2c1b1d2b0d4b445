import EaselBlobs
import EaselImages
import EaselIntegrations
import EaselStore
import Foundation
import Logging
import NIOCore

/// Profile pictures. Every picture, uploaded or fetched from a sign-in provider, is decoded and
/// shrunk by the image library to a small WebP without metadata, stored under
/// `avatars/u<user id>/<random>.webp` (one prefix per account, so removing an account's blobs
/// is one listing), and named by the account's `avatar_key`.
public struct AvatarService: Sendable {
    /// Bigger uploads are refused before anything is decoded.
    public static let maximumUploadBytes = 10 * 1_048_576
    /// The longest edge of the stored picture; pages show it much smaller.
    public static let maximumEdge = 256
    /// A sign-in waits at most this long for the provider's picture.
    public static let fetchTimeout: Duration = .seconds(10)
    public static let contentType = "image/webp"

    /// Why a picture was refused; the web layer words it for people.
    public enum Failure: Error, Sendable, Equatable {
        case empty
        case tooLarge(limitBytes: Int)
        case tooManyPixels(limit: Int)
        case notAnImage
        /// GIF, HEIC, TIFF…: an image, but not PNG, JPEG or WebP.
        case unsupportedFormat
        /// Truncated or corrupt.
        case damaged
        /// The blob store or the database failed; nothing changed.
        case notStored
    }

    private let database: AppDatabase
    private let blobs: any BlobStore
    private let images: ImageLibrary
    /// Fetches providers' pictures; nil leaves new accounts without one.
    private let fetcher: (any URLFetcher)?
    private let logger: Logger

    public init(
        database: AppDatabase, blobs: any BlobStore, images: ImageLibrary = ImageLibrary(), fetcher: (any URLFetcher)? = nil, logger: Logger
    ) {
        var images = images
        images.maximumBytes = min(images.maximumBytes, Self.maximumUploadBytes)
        self.database = database
        self.blobs = blobs
        self.images = images
        self.fetcher = fetcher
        self.logger = logger
    }

    /// Where every avatar of the account lives.
    public static func keyPrefix(userID: Int64) -> String { "avatars/u\(userID)/" }

    /// Changes whenever the picture does (the random file name): the ETag, and a `?v=` that
    /// lets browsers cache an avatar URL for long.
    public static func version(of key: String) -> String {
        let name = key.split(separator: "/").last.map(String.init) ?? key
        return name.split(separator: ".").first.map(String.init) ?? name
    }

    /// Checks and shrinks `data`, stores it and makes it the account's avatar; the previous
    /// picture is deleted after the commit. Returns the new key.
    @discardableResult
    public func replace(userID: Int64, with data: Data) async throws(Failure) -> String {
        guard !data.isEmpty else { throw .empty }
        guard data.count <= self.images.maximumBytes else { throw .tooLarge(limitBytes: self.images.maximumBytes) }
        let picture: Data
        do {
            // The thumbnail checks magic bytes and the pixel count from the header, decodes
            // everything (truncation is an error) and writes no metadata.
            picture = try await BlockingWork.run { [images] in try images.thumbnail(data, maxEdge: Self.maximumEdge).data }
        } catch let error as ImageError {
            switch error.kind {
            case .notAnImage: throw .notAnImage
            case .unsupportedFormat: throw .unsupportedFormat
            case .tooManyPixels(let limit): throw .tooManyPixels(limit: limit)
            case .tooLarge(let limit): throw .tooLarge(limitBytes: limit)
            case .damaged: throw .damaged
            case .encodingFailed: throw .damaged
            }
        } catch {
            throw .damaged
        }
        let key = Self.keyPrefix(userID: userID) + SecureToken.make(bytes: 16) + ".webp"
        let old: String?
        do {
            try await self.blobs.put(try BlobKey(key), data: ByteBuffer(bytes: picture), contentType: Self.contentType)
        } catch {
            self.logger.error("storing an avatar failed", metadata: ["user": "\(userID)", "error": "\(error)"])
            throw .notStored
        }
        do {
            old = try await self.database.replaceAvatar(userID: userID, key: key)
        } catch {
            self.logger.error("saving an avatar failed", metadata: ["user": "\(userID)", "error": "\(error)"])
            await self.deleteBlob(key)
            throw .notStored
        }
        if let old { await self.deleteBlob(old) }
        return key
    }

    /// Takes the picture away; the account shows initials again.
    public func remove(userID: Int64) async throws {
        if let old = try await self.database.replaceAvatar(userID: userID, key: nil) {
            await self.deleteBlob(old)
        }
    }

    /// For an account just made from a provider's identity: fetches its picture through the
    /// guarded fetcher (no transaction is open meanwhile) and keeps it. Never fails: a refused
    /// address, an error answer, a timeout or something that is not an image is logged, and the
    /// account simply has no avatar. Returns whether one was stored.
    @discardableResult
    public func importPicture(userID: Int64, from url: URL) async -> Bool {
        guard let fetcher = self.fetcher else { return false }
        let host = url.host ?? "?"
        let data: Data
        do {
            data = try await fetcher.fetch(url).data
        } catch {
            self.logger.notice("the provider's picture was not fetched", metadata: ["user": "\(userID)", "host": "\(host)", "error": "\(error)"])
            return false
        }
        do {
            try await self.replace(userID: userID, with: data)
            self.logger.info("stored the provider's picture as avatar", metadata: ["user": "\(userID)", "host": "\(host)"])
            return true
        } catch {
            self.logger.notice("the provider's picture was not used", metadata: ["user": "\(userID)", "host": "\(host)", "error": "\(error)"])
            return false
        }
    }

    private func deleteBlob(_ key: String) async {
        do {
            try await self.blobs.delete(BlobKey(key))
        } catch {
            self.logger.warning("could not delete an avatar blob", metadata: ["key": "\(key)", "error": "\(error)"])
        }
    }
}
