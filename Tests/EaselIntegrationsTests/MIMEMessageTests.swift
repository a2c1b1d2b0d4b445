import Foundation
import Testing

@testable import EaselIntegrations

@Suite("MIMEMessage renders RFC 5322 mail")
struct MIMEMessageTests {
    static func message(
        subject: String = "Your images are ready",
        text: String = "Hello\nThree images are waiting.",
        html: String? = "<p>Hello</p>",
        from: MailAddress = MailAddress("noreply@easel.test", name: "Easel"),
        to: [MailAddress] = [MailAddress("ana@example.com", name: "Ana")]
    ) -> MailMessage {
        MailMessage(
            from: from,
            to: to,
            replyTo: MailAddress("help@easel.test"),
            subject: subject,
            text: text,
            html: html,
            messageID: "<42.abc@easel.test>",
            date: Date(timeIntervalSince1970: 1_234_567_890)
        )
    }

    /// Splits a rendered message at its blank line and unfolds the header lines.
    static func headers(of rendered: String) -> [(name: String, value: String)] {
        let head = rendered.components(separatedBy: "\r\n\r\n").first ?? ""
        let unfolded = head.replacingOccurrences(of: "\r\n ", with: " ")
        return unfolded.components(separatedBy: "\r\n").map { line in
            let colon = line.firstIndex(of: ":") ?? line.endIndex
            return (String(line[..<colon]), String(line[colon...].dropFirst().drop(while: { $0 == " " })))
        }
    }

    @Test("every line ends with CRLF and none is longer than 78 characters")
    func linesAreCRLFAndShort() {
        let longLine = String(repeating: "Löwe und Bär, ", count: 200)
        let rendered = MIMEMessage(
            Self.message(subject: String(repeating: "Grüße aus Easel ", count: 12), text: longLine, html: "<p>\(longLine)</p>")
        ).rendered()

        #expect(rendered.hasSuffix("\r\n"))
        #expect(!rendered.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
        #expect(!rendered.replacingOccurrences(of: "\r\n", with: "").contains("\r"))
        let lengths = rendered.components(separatedBy: "\r\n").map(\.utf8.count)
        #expect(lengths.max() ?? 0 <= 78, "longest line \(lengths.max() ?? 0)")
        #expect(rendered.utf8.allSatisfy { $0 < 0x80 }, "the message is 7-bit")
    }

    @Test("headers come in the documented set, with an RFC 5322 date and the given Message-ID")
    func headerSet() {
        let headers = Self.headers(of: MIMEMessage(Self.message(), boundary: "=_b").rendered())
        let names = headers.map(\.name)

        #expect(names == ["From", "To", "Reply-To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"])
        #expect(headers.first { $0.name == "Date" }?.value == "Fri, 13 Feb 2009 23:31:30 +0000")
        #expect(headers.first { $0.name == "Message-ID" }?.value == "<42.abc@easel.test>")
        #expect(headers.first { $0.name == "From" }?.value == "Easel <noreply@easel.test>")
        #expect(headers.first { $0.name == "Content-Type" }?.value == "multipart/alternative; boundary=\"=_b\"")
    }

    @Test("a non-ASCII subject and display name become UTF-8 encoded-words")
    func encodedWords() throws {
        let headers = Self.headers(
            of: MIMEMessage(Self.message(subject: "Grüße 🎨", from: MailAddress("noreply@easel.test", name: "Zoë"))).rendered()
        )
        let subject = try #require(headers.first { $0.name == "Subject" }?.value)
        let from = try #require(headers.first { $0.name == "From" }?.value)

        #expect(subject == "=?UTF-8?B?\(Data("Grüße 🎨".utf8).base64EncodedString())?=")
        #expect(from == "=?UTF-8?B?\(Data("Zoë".utf8).base64EncodedString())?= <noreply@easel.test>")
    }

    @Test("a display name with specials is quoted, and quotes inside it are escaped")
    func quotedDisplayName() throws {
        let headers = Self.headers(of: MIMEMessage(Self.message(to: [MailAddress("a@example.com", name: "Doe, \"Jo\"")])).rendered())

        #expect(headers.first { $0.name == "To" }?.value == "\"Doe, \\\"Jo\\\"\" <a@example.com>")
    }

    @Test("line breaks in a header value cannot start a new header", arguments: ["\r\n", "\n", "\r", "\u{2028}", "\u{85}"])
    func headerInjection(_ lineBreak: String) {
        let rendered = MIMEMessage(
            Self.message(
                subject: "Hi\(lineBreak)Bcc: victim@example.com",
                to: [MailAddress("ana@example.com", name: "Ana\(lineBreak)X-Injected: yes")]
            )
        ).rendered()
        let names = Self.headers(of: rendered).map(\.name)

        #expect(!names.contains("Bcc"))
        #expect(!names.contains("X-Injected"))
        #expect(names.filter { $0 == "Subject" }.count == 1)
    }

    @Test("a message without HTML is one text/plain part")
    func singlePart() {
        let rendered = MIMEMessage(Self.message(html: nil)).rendered()
        let headers = Self.headers(of: rendered)

        #expect(headers.first { $0.name == "Content-Type" }?.value == "text/plain; charset=utf-8")
        #expect(headers.first { $0.name == "Content-Transfer-Encoding" }?.value == "quoted-printable")
        #expect(!rendered.contains("multipart"))
    }

    @Test("quoted-printable escapes '=', non-ASCII and trailing spaces, and breaks long lines softly")
    func quotedPrintable() {
        #expect(QuotedPrintable.encode("a=b") == "a=3Db")
        #expect(QuotedPrintable.encode("é") == "=C3=A9")
        #expect(QuotedPrintable.encode("end \nnext") == "end=20\r\nnext")
        #expect(QuotedPrintable.encode(".dot\r\nline") == ".dot\r\nline")

        let long = QuotedPrintable.encode(String(repeating: "x", count: 200))
        let lines = long.components(separatedBy: "\r\n")
        #expect(lines.count == 3)
        #expect(lines.dropLast().allSatisfy { $0.hasSuffix("=") && $0.count <= 76 })
        #expect(long.replacingOccurrences(of: "=\r\n", with: "") == String(repeating: "x", count: 200))
    }

    @Test("random boundaries differ and never occur in an encoded body")
    func boundaries() {
        let first = MIMEMessage.randomBoundary()
        let second = MIMEMessage.randomBoundary()

        #expect(first != second)
        #expect(first.count == 40)
        // Quoted-printable writes every "=" as "=3D", and the boundary starts with "=_".
        #expect(!QuotedPrintable.encode("a \(first) b").contains(first))
    }

    @Test("the display form for APIs keeps UTF-8 and quotes specials")
    func displayForm() {
        #expect(MIMEHeader.displayForm(MailAddress("z@example.com", name: "Zoë")) == "Zoë <z@example.com>")
        #expect(MIMEHeader.displayForm(MailAddress("z@example.com", name: "Doe, Jo")) == "\"Doe, Jo\" <z@example.com>")
        #expect(MIMEHeader.displayForm(MailAddress("z@example.com")) == "z@example.com")
    }
}
