import EaselStore
import Foundation

/// The words of the account mails. Links are built from the configured public URL, never from
/// a request's Host header.
public struct AccountMails: Sendable {
    public let siteName: String
    public let publicURL: URL

    public init(siteName: String, publicURL: URL) {
        self.siteName = siteName
        self.publicURL = publicURL
    }

    public func link(_ path: String, token: String) -> String {
        "\(self.publicURL.absoluteString)\(path)?token=\(token)"
    }

    func messageID() -> String {
        "<\(UUID().uuidString.lowercased())@\(self.publicURL.host ?? "easel.invalid")>"
    }

    func draft(kind: String, to user: (email: String, name: String?), subject: String, paragraphs: [String], action: (label: String, url: String)?) -> MailDraft {
        var text = paragraphs.joined(separator: "\n\n")
        var html = paragraphs.map { "<p>\(Self.escape($0))</p>" }.joined(separator: "\n")
        if let action {
            text += "\n\n\(action.label): \(action.url)"
            html += "\n<p><a href=\"\(Self.escape(action.url))\" style=\"display:inline-block;padding:10px 18px;background:#6a4cf0;color:#fff;border-radius:999px;text-decoration:none\">\(Self.escape(action.label))</a></p>"
            html += "\n<p style=\"color:#615d68;font-size:13px\">Or paste this address into your browser: \(Self.escape(action.url))</p>"
        }
        text += "\n\n— \(self.siteName)\n"
        html = "<!doctype html><html><body style=\"font-family:system-ui,sans-serif;line-height:1.5;color:#1d1b20\">\n\(html)\n<p>— \(Self.escape(self.siteName))</p></body></html>"
        return MailDraft(kind: kind, toEmail: user.email, toName: user.name, subject: subject, text: text, html: html, messageID: self.messageID())
    }

    public func verification(to email: String, name: String?, token: String, code: String) -> MailDraft {
        self.draft(
            kind: "verify_email", to: (email, name), subject: "Confirm your email for \(self.siteName)",
            paragraphs: [
                "Welcome to \(self.siteName)! Confirm that this address is yours to finish setting up your account.",
                "Your confirmation code is \(code). It works for 24 hours, as does the button below.",
                "If you did not sign up, ignore this mail: no account will be usable with this address.",
            ],
            action: ("Confirm my email", self.link("/verify", token: token))
        )
    }

    public func alreadyRegistered(to email: String, name: String?) -> MailDraft {
        self.draft(
            kind: "already_registered", to: (email, name), subject: "You already have an account on \(self.siteName)",
            paragraphs: [
                "Someone tried to sign up to \(self.siteName) with this address, which already has an account.",
                "If it was you, sign in instead, or reset your password if you forgot it. If it was not you, you can ignore this mail.",
            ],
            action: ("Sign in", "\(self.publicURL.absoluteString)/signin")
        )
    }

    public func passwordReset(to email: String, name: String?, token: String) -> MailDraft {
        self.draft(
            kind: "reset_password", to: (email, name), subject: "Reset your \(self.siteName) password",
            paragraphs: [
                "Someone asked to reset the password of your \(self.siteName) account.",
                "The link below works once, for one hour. If you did not ask, ignore this mail: your password stays as it is.",
            ],
            action: ("Choose a new password", self.link("/reset-password", token: token))
        )
    }

    public func passwordChanged(to email: String, name: String?, signedOutOthers: Bool) -> MailDraft {
        self.draft(
            kind: "password_changed", to: (email, name), subject: "Your \(self.siteName) password was changed",
            paragraphs: [
                signedOutOthers
                    ? "The password of your \(self.siteName) account was just changed, and every other device was signed out."
                    : "The password of your \(self.siteName) account was just changed.",
                "If this was not you, reset your password now and check your account's sessions.",
            ],
            action: ("Reset my password", "\(self.publicURL.absoluteString)/forgot-password")
        )
    }

    public func confirmNewEmail(to email: String, name: String?, token: String) -> MailDraft {
        self.draft(
            kind: "change_email", to: (email, name), subject: "Confirm your new email for \(self.siteName)",
            paragraphs: [
                "You asked to use this address for your \(self.siteName) account. Confirm it to make the change; until then your old address stays.",
                "The link works for 24 hours. If you did not ask for this, ignore this mail.",
            ],
            action: ("Use this address", self.link("/account/email/confirm", token: token))
        )
    }

    public func emailChanged(to oldEmail: String, name: String?) -> MailDraft {
        self.draft(
            kind: "email_changed", to: (oldEmail, name), subject: "The email of your \(self.siteName) account was changed",
            paragraphs: [
                "Your \(self.siteName) account no longer uses this address: a new one was confirmed just now.",
                "If this was not you, contact the administrator of this server at once.",
            ],
            action: nil
        )
    }

    public func newDevice(to email: String, name: String?, device: String, ip: String, at date: Date) -> MailDraft {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        return self.draft(
            kind: "new_device", to: (email, name), subject: "New sign-in to your \(self.siteName) account",
            paragraphs: [
                "Your account was just signed in from a device it had not been used on before: \(device), from \(ip.isEmpty ? "an unknown address" : ip), at \(formatter.string(from: date)).",
                "If this was you, there is nothing to do. If not, change your password now and sign that session out from your account page.",
            ],
            action: ("Review my sessions", "\(self.publicURL.absoluteString)/account")
        )
    }

    public func twoFactorChanged(to email: String, name: String?, enabled: Bool) -> MailDraft {
        self.draft(
            kind: enabled ? "two_factor_on" : "two_factor_off", to: (email, name),
            subject: enabled ? "Two-factor sign-in is on for \(self.siteName)" : "Two-factor sign-in was turned off for \(self.siteName)",
            paragraphs: enabled
                ? [
                    "Two-factor sign-in is now on for your \(self.siteName) account: signing in asks for a code from your authenticator app.",
                    "Keep your recovery codes somewhere safe. If this was not you, reset your password and contact the administrator.",
                ]
                : [
                    "Two-factor sign-in was turned off for your \(self.siteName) account: signing in now needs only your password.",
                    "If this was not you, reset your password at once and turn two-factor sign-in back on.",
                ],
            action: ("Open my account", "\(self.publicURL.absoluteString)/account")
        )
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
