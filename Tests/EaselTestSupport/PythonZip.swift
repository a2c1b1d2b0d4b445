import Foundation

/// Reads a ZIP file with Python's `zipfile` (from the checkout's .venv): a reader written by
/// someone else, so a ZIP that only our own code could read fails the test.
public enum PythonZip {
    public struct Entry: Decodable, Sendable, Equatable {
        public var name: String
        public var size: Int
        public var compressedSize: Int
        /// 0 stored, 8 deflated.
        public var method: Int
        public var sha256: String
        /// The local header or central record carries a ZIP64 extra field.
        public var zip64: Bool

        enum CodingKeys: String, CodingKey {
            case name, size, sha256, zip64, method
            case compressedSize = "compressed_size"
        }
    }

    public struct Report: Decodable, Sendable {
        /// Every entry, in archive order.
        public var entries: [Entry]
        /// `testzip()`: the first entry whose CRC-32 does not match, or nil.
        public var firstBadEntry: String?
        /// The archive ends with ZIP64 end records.
        public var zip64End: Bool
        /// Text files the caller asked for, decoded as UTF-8.
        public var texts: [String: String]

        enum CodingKeys: String, CodingKey {
            case entries, texts
            case firstBadEntry = "first_bad_entry"
            case zip64End = "zip64_end"
        }

        public func entry(_ name: String) -> Entry? { self.entries.first { $0.name == name } }
    }

    static let script = #"""
        import hashlib, json, struct, sys, zipfile
        path, wanted = sys.argv[1], sys.argv[2:]
        out = {"entries": [], "texts": {}}
        with zipfile.ZipFile(path) as archive:
            out["first_bad_entry"] = archive.testzip()
            for info in archive.infolist():
                digest = hashlib.sha256()
                with archive.open(info) as member:
                    for block in iter(lambda: member.read(1 << 20), b""):
                        digest.update(block)
                out["entries"].append({
                    "name": info.filename, "size": info.file_size, "compressed_size": info.compress_size,
                    "method": info.compress_type, "sha256": digest.hexdigest(),
                    "zip64": b"\x01\x00" in info.extra[:2] or info.file_size >= 0xFFFFFFFF,
                })
            for name in wanted:
                out["texts"][name] = archive.read(name).decode("utf-8")
        with open(path, "rb") as f:
            f.seek(-22, 2)
            tail = f.read(22)
            f.seek(-42, 2)
            locator = f.read(20)
        out["zip64_end"] = locator[:4] == b"PK\x06\x07" and tail[:4] == b"PK\x05\x06"
        print(json.dumps(out))
        """#

    /// Opens `file`, checks every CRC, hashes every entry, and returns the texts of `texts`.
    public static func inspect(_ file: URL, texts: [String] = []) async throws -> Report {
        let python = Checkout.venv.appending(path: "bin/python")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            throw TestPeerError("reading ZIP files needs \(python.path); run `make test`, or: python3 -m venv .venv")
        }
        let result = try await ChildProcess.run(python, ["-c", Self.script, file.path] + texts)
        guard result.status == 0 else {
            throw TestPeerError("Python's zipfile could not read \(file.lastPathComponent): \(result.stderr)")
        }
        return try JSONDecoder().decode(Report.self, from: Data(result.stdout.utf8))
    }
}
