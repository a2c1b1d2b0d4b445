import Foundation

/// The files of `static/`, `templates/` and `locales/` as they were when the binary was built.
public enum EmbeddedAssets {
    /// Decodes every embedded file; names are relative to the package root ("static/app.css").
    public static func load() -> [String: Data] {
        var files: [String: Data] = [:]
        for entry in encoded {
            files[entry.name] = Data(base64Encoded: entry.base64) ?? Data()
        }
        return files
    }
}
