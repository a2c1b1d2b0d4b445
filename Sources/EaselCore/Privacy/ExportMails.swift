import EaselStore
import Foundation

/// The mail that says an "Export everything" archive is ready, with its download link.
extension AccountMails {
    public static let exportReadyKind = "export_ready"

    public func exportReady(to user: User, exportID: Int64, size: Int64, expiresAt: Date) -> MailDraft {
        let language = Language(code: user.language) ?? .english
        return self.localizedDraft(
            kind: Self.exportReadyKind, name: "export_ready", to: (user.email, user.displayName.isEmpty ? nil : user.displayName), language: language,
            arguments: ["size": ByteSize.string(size), "date": language.dateTime(expiresAt)],
            action: ("mail.export_ready.action", "\(self.publicURL.absoluteString)\(Self.exportDownloadPath(exportID))")
        )
    }

    /// Where the archive is downloaded from (signed in, by its owner only).
    public static func exportDownloadPath(_ exportID: Int64) -> String {
        "/account/privacy/exports/\(exportID)/download"
    }
}

/// "812 KB", "1.4 GB": sizes as people read them (decimal units, like file managers).
public enum ByteSize {
    public static func string(_ bytes: Int64) -> String {
        let units = ["bytes", "KB", "MB", "GB", "TB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1000, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        if unit == 0 { return "\(bytes) bytes" }
        return value >= 100 || value.rounded() == value ? "\(Int(value.rounded())) \(units[unit])" : String(format: "%.1f", value) + " " + units[unit]
    }
}
