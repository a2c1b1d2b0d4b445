import Crypto
import Foundation

/// The instance's master keys: they wrap every person's data key, and nothing else. The last
/// key is the one in use; older ones stay only while `easel keys rotate-master` runs.
public struct MasterKeyring: Sendable {
    public struct Key: Sendable {
        public var id: String
        public var key: SymmetricKey
    }

    public private(set) var keys: [Key]

    public init(keys: [Key]) {
        precondition(!keys.isEmpty, "a keyring holds at least one key")
        self.keys = keys
    }

    public var current: Key { self.keys[self.keys.count - 1] }

    public func key(id: String) -> Key? {
        self.keys.last { $0.id == id }
    }

    public static func newKey(now: Date = Date()) -> Key {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd"
        return Key(id: "mk-\(formatter.string(from: now))-\(randomHex(bytes: 3))", key: SymmetricKey(size: .bits256))
    }

    public func adding(_ key: Key) -> MasterKeyring {
        MasterKeyring(keys: self.keys + [key])
    }

    public func keeping(only id: String) -> MasterKeyring {
        MasterKeyring(keys: self.keys.filter { $0.id == id })
    }
}

/// Reads and writes the master key file (EASEL_MASTER_KEY_FILE, by default `master.key` in the
/// data folder): one `id base64-key` per line, mode 0600, made on first start.
public enum MasterKeyFile {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads the file, or makes one when it is missing and `existingDataKeys` is 0. A missing
    /// file while data keys exist is refused: a new master key would open none of them, and
    /// would wrap new ones that the real file could not open once put back.
    public static func loadOrCreate(at url: URL, existingDataKeys: Int = 0) throws -> MasterKeyring {
        if FileManager.default.fileExists(atPath: url.path) { return try self.load(at: url) }
        guard existingDataKeys == 0 else {
            throw Failure(
                description:
                    "the master key file \(url.path) is missing, but \(existingDataKeys) people have data keys wrapped by it: put your copy back there (or point EASEL_MASTER_KEY_FILE at it); see docs/encryption.md"
            )
        }
        let ring = MasterKeyring(keys: [MasterKeyring.newKey()])
        // If two processes race, one creates the file and the other reads it.
        return try PrivateFile.create(at: url, contents: self.render(ring)) ? ring : self.load(at: url)
    }

    public static func load(at url: URL) throws -> MasterKeyring {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw Failure(description: "cannot read the master key file \(url.path): check its owner and permissions")
        }
        return try self.parse(String(decoding: data, as: UTF8.self), path: url.path)
    }

    static func parse(_ text: String, path: String) throws -> MasterKeyring {
        var keys: [MasterKeyring.Key] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = line.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 2, let bytes = Data(base64Encoded: String(fields[1])), bytes.count == 32 else {
                throw Failure(description: "\(path), line \(number + 1): expected \"<id> <32 bytes in base64>\"; restore the file from your copy of it")
            }
            keys.append(.init(id: String(fields[0]), key: SymmetricKey(data: bytes)))
        }
        guard !keys.isEmpty else {
            throw Failure(description: "\(path) holds no key; restore it from your copy (without it, encrypted images cannot be read)")
        }
        return MasterKeyring(keys: keys)
    }

    static func render(_ ring: MasterKeyring) -> String {
        var text = """
            # Easel master keys. They unlock every person's data key: keep a copy somewhere safe and
            # apart from the backups (see docs/encryption.md). The last line is the key in use.

            """
        for key in ring.keys {
            text += key.id + " " + key.key.withUnsafeBytes { Data($0).base64EncodedString() } + "\n"
        }
        return text
    }

    /// Replaces the file atomically, so a crash leaves either the old keyring or the new one,
    /// never half of either.
    public static func replace(at url: URL, with ring: MasterKeyring) throws {
        try PrivateFile.replace(at: url, contents: self.render(ring))
    }
}

private func randomHex(bytes: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max, using: &generator)) }.joined()
}
