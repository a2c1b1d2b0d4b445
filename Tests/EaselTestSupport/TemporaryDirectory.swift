import Foundation

/// A fresh folder under the system's temporary directory, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let url: URL

    public init(_ label: String = "easel-test") throws {
        self.url = FileManager.default.temporaryDirectory.appending(path: "\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.url, withIntermediateDirectories: true)
    }

    public func remove() {
        try? FileManager.default.removeItem(at: self.url)
    }
}

/// Paths of this checkout, found from this file's location.
public enum Checkout {
    /// The repository root.
    public static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// The folder holding the built products (`.build/debug`), where `easel` is.
    public static var productsFolder: URL {
        // The test bundle runs from the same folder as the built executables.
        let candidates = [
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
            root.appending(path: ".build/debug"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.appending(path: "easel").path) } ?? root.appending(path: ".build/debug")
    }

    /// The Python virtual environment `make test` installs the test peers into.
    public static var venv: URL {
        if let path = ProcessInfo.processInfo.environment["EASEL_TEST_VENV"] { return URL(fileURLWithPath: path) }
        return root.appending(path: ".venv")
    }
}
