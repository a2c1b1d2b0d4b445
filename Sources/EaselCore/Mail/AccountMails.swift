import EaselStore
import Foundation

/// The words of the account mails, from the message catalogs in the recipient's language (the
/// caller passes it; composed at queue time). Links are built from the configured public URL,
/// never from a request's Host header.
public struct AccountMails: Sendable {
    public let siteName: String
    public let publicURL: URL
    public let localizer: Localizer

    public init(siteName: String, publicURL: URL, localizer: Localizer) {
        self.siteName = siteName
        self.publicURL = publicURL
        self.localizer = localizer
    }

    /// A catalog text with the site name filled in as `{site}`.
    func text(_ key: String, _ arguments: [String: String] = [:], _ language: Language) -> String {
        self.localizer.text(key, arguments.merging(["site": self.siteName]) { given, _ in given }, language: language)
    }

    /// A mail whose subject, paragraphs and button are `mail.<name>.subject`, `.p1`, `.p2`… and `.action`.
    func localizedDraft(
        kind: String, name: String, to user: (email: String, name: String?), language: Language, arguments: [String: String] = [:],
        paragraphs: [String] = ["p1", "p2"], action: (key: String, url: String)?
    ) -> MailDraft {
        self.draft(
            kind: kind, to: user, subject: self.text("mail.\(name).subject", arguments, language),
            paragraphs: paragraphs.map { self.text("mail.\(name).\($0)", arguments, language) },
            action: action.map { (self.text($0.key, arguments, language), $0.url) }, language: language
        )
    }

    public func link(_ path: String, token: String) -> String {
        "\(self.publicURL.absoluteString)\(path)?token=\(token)"
    }

    func messageID() -> String {
        "<\(UUID().uuidString.lowercased())@\(self.publicURL.host ?? "easel.invalid")>"
    }

    func draft(
        kind: String, to user: (email: String, name: String?), subject: String, paragraphs: [String], action: (label: String, url: String)?,
        language: Language = .english
    ) -> MailDraft {
        var text = paragraphs.joined(separator: "\n\n")
        var html = paragraphs.map { "<p>\(Markup.escape($0))</p>" }.joined(separator: "\n")
        if let action {
            text += "\n\n\(action.label): \(action.url)"
            html += "\n<p><a href=\"\(Markup.escape(action.url))\" style=\"display:inline-block;padding:10px 18px;background:#6a4cf0;color:#fff;border-radius:999px;text-decoration:none\">\(Markup.escape(action.label))</a></p>"
            html += "\n<p style=\"color:#615d68;font-size:13px\">\(Markup.escape(self.text("mail.paste_link", ["url": action.url], language)))</p>"
        }
        text += "\n\n— \(self.siteName)\n"
        html = "<!doctype html><html lang=\"\(language.rawValue)\"><body style=\"font-family:system-ui,sans-serif;line-height:1.5;color:#1d1b20\">\n\(html)\n<p>— \(Markup.escape(self.siteName))</p></body></html>"
        return MailDraft(kind: kind, toEmail: user.email, toName: user.name, subject: subject, text: text, html: html, messageID: self.messageID())
    }

    public func verification(to email: String, name: String?, token: String, code: String, language: Language) -> MailDraft {
        self.localizedDraft(
            kind: "verify_email", name: "verify", to: (email, name), language: language, arguments: ["code": code], paragraphs: ["p1", "p2", "p3"],
            action: ("mail.verify.action", self.link("/verify", token: token))
        )
    }

    public func invitation(to email: String, from inviter: String, token: String, language: Language) -> MailDraft {
        self.localizedDraft(
            kind: "invitation", name: "invitation", to: (email, nil), language: language, arguments: ["inviter": inviter],
            action: ("mail.invitation.action", "\(self.publicURL.absoluteString)/signup?invite=\(token)")
        )
    }

    public func alreadyRegistered(to email: String, name: String?, language: Language) -> MailDraft {
        self.localizedDraft(
            kind: "already_registered", name: "registered", to: (email, name), language: language,
            action: ("mail.registered.action", "\(self.publicURL.absoluteString)/signin")
        )
    }

    public func passwordReset(to email: String, name: String?, token: String, language: Language) -> MailDraft {
        self.localizedDraft(
            kind: "reset_password", name: "reset", to: (email, name), language: language,
            action: ("mail.reset.action", self.link("/reset-password", token: token))
        )
    }

    public func passwordChanged(to email: String, name: String?, signedOutOthers: Bool, language: Language) -> MailDraft {
        self.localizedDraft(
            kind: "password_changed", name: "password_changed", to: (email, name), language: language,
            paragraphs: [signedOutOthers ? "p1_signed_out" : "p1", "p2"],
            action: ("mail.password_changed.action", "\(self.publicURL.absoluteString)/forgot-password")
        )
    }

    public func confirmNewEmail(to email: String, name: String?, token: String, language: Language) -> MailDraft {
        self.localizedDraft(
            kind: "change_email", name: "new_email", to: (email, name), language: language,
            action: ("mail.new_email.action", self.link("/account/email/confirm", token: token))
        )
    }

    public func emailChanged(to oldEmail: String, name: String?, language: Language) -> MailDraft {
        self.localizedDraft(kind: "email_changed", name: "email_changed", to: (oldEmail, name), language: language, action: nil)
    }

    public func newDevice(to email: String, name: String?, device: DeviceName, ip: String, at date: Date, language: Language) -> MailDraft {
        let address = ip.isEmpty ? self.text("mail.new_device.unknown_address", [:], language) : ip
        return self.localizedDraft(
            kind: "new_device", name: "new_device", to: (email, name), language: language,
            arguments: ["device": device.text(self.localizer, language: language), "ip": address, "time": language.dateTime(date)],
            action: ("mail.new_device.action", "\(self.publicURL.absoluteString)/account")
        )
    }

    public func twoFactorChanged(to email: String, name: String?, enabled: Bool, language: Language) -> MailDraft {
        self.localizedDraft(
            kind: enabled ? "two_factor_on" : "two_factor_off", name: enabled ? "two_factor_on" : "two_factor_off", to: (email, name),
            language: language, action: ("mail.two_factor.action", "\(self.publicURL.absoluteString)/account")
        )
    }
}
