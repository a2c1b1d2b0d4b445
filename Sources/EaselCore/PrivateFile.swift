import Foundation

/// Small files only the service's user may read (mode 0600): keys. Written whole or not at
/// all: the bytes go to a temporary file beside the target, are fsynced, then put in place,
/// so a crash never leaves a partial key behind.
public enum PrivateFile {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Makes the file at `url`; false when one is already there (another process made it first).
    public static func create(at url: URL, contents: String) throws -> Bool {
        let temporary = try self.writeTemporary(beside: url, contents: contents)
        defer { unlink(temporary.path) }
        // link() fails when the target exists, so two processes never overwrite each other.
        guard link(temporary.path, url.path) == 0 else {
            if errno == EEXIST { return false }
            throw Failure(description: "cannot create \(url.path): \(String(cString: strerror(errno)))")
        }
        self.syncFolder(of: url)
        return true
    }

    /// Replaces the file at `url` (or makes it) in one step.
    public static func replace(at url: URL, contents: String) throws {
        let temporary = try self.writeTemporary(beside: url, contents: contents)
        guard rename(temporary.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary.path)
            throw Failure(description: "cannot replace \(url.path): \(reason)")
        }
        self.syncFolder(of: url)
    }

    private static func writeTemporary(beside url: URL, contents: String) throws -> URL {
        var generator = SystemRandomNumberGenerator()
        let suffix = String(UInt32.random(in: .min ... .max, using: &generator), radix: 16)
        let temporary = url.deletingLastPathComponent().appending(path: ".\(url.lastPathComponent).\(suffix)")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else {
            throw Failure(description: "cannot write next to \(url.path) (\(temporary.path)): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(contents.utf8)
        let written = write(fd, bytes, bytes.count) == bytes.count && fsync(fd) == 0
        let reason = String(cString: strerror(errno))
        close(fd)
        guard written else {
            unlink(temporary.path)
            throw Failure(description: "cannot write \(temporary.path): \(reason)")
        }
        return temporary
    }

    private static func syncFolder(of url: URL) {
        let folder = open(url.deletingLastPathComponent().path, O_RDONLY)
        if folder >= 0 {
            fsync(folder)
            close(folder)
        }
    }
}
