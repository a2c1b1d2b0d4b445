import Crypto
import EaselCore
import Foundation

/// EASEL_SECRET_KEY when set; otherwise a key generated once into the data folder with mode
/// 0600, so sessions and signed links survive restarts without any set-up.
enum SecretKeyFile {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func loadOrCreate(at url: URL) throws -> String {
        if let existing = FileManager.default.contents(atPath: url.path) {
            let key = String(decoding: existing, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard key.utf8.count >= 32 else {
                throw Failure(description: "\(url.path) holds a key shorter than 32 characters: delete it to have a new one generated, or set EASEL_SECRET_KEY")
            }
            return key
        }
        let key = SymmetricKey(size: .bits256).withUnsafeBytes { bytes in bytes.map { String(format: "%02x", $0) }.joined() }
        // If two processes race, one creates the file and the other reads it.
        return try PrivateFile.create(at: url, contents: key + "\n") ? key : self.loadOrCreate(at: url)
    }
}

/// An advisory lock on the data folder held while serving, so `easel restore` can tell that
/// the instance is stopped.
public final class DataFolderLock: Sendable {
    private let fd: Int32

    public struct Held: Error, CustomStringConvertible {
        public var path: String
        public var description: String { "another easel process is using this data folder (\(self.path) is locked): stop it first" }
    }

    public init(path: URL) throws {
        let fd = open(path.path, O_RDWR | O_CREAT, 0o600)
        guard fd >= 0 else { throw SecretKeyFile.Failure(description: "cannot open \(path.path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw Held(path: path.path)
        }
        self.fd = fd
    }

    deinit {
        flock(self.fd, LOCK_UN)
        close(self.fd)
    }
}
