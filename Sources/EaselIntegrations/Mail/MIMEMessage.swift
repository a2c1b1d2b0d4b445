import Foundation

/// A `MailMessage` rendered as an RFC 5322 / MIME message, ready for SMTP's DATA.
///
/// The output is 7-bit ASCII with CRLF line endings (as long as the addresses are ASCII):
/// non-ASCII display names and subjects become RFC 2047 encoded-words, bodies are UTF-8 in
/// quoted-printable, so no line is longer than 78 characters in headers or 76 in bodies. Line
/// breaks and other control characters in header values are replaced by spaces, so no value can
/// start a header of its own.
public struct MIMEMessage: Sendable {
    public var message: MailMessage
    /// Separates the parts of multipart/alternative; never appears in quoted-printable output,
    /// which always escapes "=".
    public var boundary: String

    public init(_ message: MailMessage, boundary: String = MIMEMessage.randomBoundary()) {
        self.message = message
        self.boundary = boundary
    }

    /// "=_easel_" and 32 random hex digits.
    public static func randomBoundary() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = String(generator.next() as UInt64, radix: 16)
        let low = String(generator.next() as UInt64, radix: 16)
        return "=_easel_" + String(repeating: "0", count: 16 - high.count) + high + String(repeating: "0", count: 16 - low.count) + low
    }

    /// The whole message: headers, a blank line, the body; every line ends with CRLF.
    public func rendered() -> String {
        var headers: [String] = []
        headers.append(MIMEHeader.addressHeader("From", [self.message.from]))
        headers.append(MIMEHeader.addressHeader("To", self.message.to))
        if let replyTo = self.message.replyTo {
            headers.append(MIMEHeader.addressHeader("Reply-To", [replyTo]))
        }
        headers.append(MIMEHeader.unstructured("Subject", self.message.subject))
        headers.append("Date: " + MIMEHeader.date(self.message.date))
        headers.append("Message-ID: " + MIMEHeader.messageID(self.message.messageID))
        for extra in self.message.allowedExtraHeaders {
            // Folded at spaces only: "<https://…>, <mailto:…>" keeps each address whole.
            headers.append(MIMEHeader.fold(extra.name, MIMEHeader.sanitize(extra.value).split(separator: " ").map(String.init)))
        }
        headers.append("MIME-Version: 1.0")

        guard let html = self.message.html else {
            headers.append(contentsOf: Self.textPartHeaders(subtype: "plain"))
            // The CRLF that ends the last line of a message belongs to the body; a final soft
            // break keeps it from adding a line break the text did not have.
            var body = QuotedPrintable.encode(self.message.text)
            if !body.hasSuffix("\r\n") { body += "=\r\n" }
            return headers.joined(separator: "\r\n") + "\r\n\r\n" + body
        }
        headers.append("Content-Type: multipart/alternative;\r\n boundary=\"\(self.boundary)\"")
        // The CRLF before each "--boundary" belongs to the boundary, not to the part before it.
        let lines =
            headers + [
                "",
                "This is a multi-part message in MIME format.",
                "--\(self.boundary)",
            ] + Self.textPartHeaders(subtype: "plain") + [
                "",
                QuotedPrintable.encode(self.message.text),
                "--\(self.boundary)",
            ] + Self.textPartHeaders(subtype: "html") + [
                "",
                QuotedPrintable.encode(html),
                "--\(self.boundary)--",
            ]
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// The rendered message as bytes.
    public func bytes() -> [UInt8] {
        Array(self.rendered().utf8)
    }

    private static func textPartHeaders(subtype: String) -> [String] {
        [
            "Content-Type: text/\(subtype); charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
        ]
    }
}

/// Header values: sanitising, folding, RFC 2047 encoded-words, addresses, dates.
enum MIMEHeader {
    /// Lines of a header stay within this many characters (RFC 5322's "SHOULD" limit).
    static let lineLimit = 78
    /// UTF-8 bytes per encoded-word: "=?UTF-8?B?" + 52 base64 characters + "?=" is 64 characters,
    /// which fits after any header name used here.
    static let encodedWordBytes = 39

    /// Control characters (CR and LF above all) and Unicode line separators become spaces, so a
    /// value can never end its header line and start another.
    static func sanitize(_ value: String) -> String {
        var scalars = String.UnicodeScalarView()
        for scalar in value.unicodeScalars {
            if scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}" {
                scalars.append(" ")
            } else {
                scalars.append(scalar)
            }
        }
        return String(scalars)
    }

    /// An unstructured header (Subject): folded at spaces when it is plain ASCII, otherwise a
    /// run of encoded-words.
    static func unstructured(_ name: String, _ value: String) -> String {
        let clean = self.sanitize(value)
        let words = clean.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        // "=?" could be read back as an encoded-word, and a word too long to fold could break the limit.
        let needsEncoding =
            !self.isPrintableASCII(clean) || clean.contains("=?")
            || words.contains { $0.count > self.lineLimit - name.count - 2 }
        if needsEncoding {
            return self.fold(name, self.encodedWords(clean))
        }
        return self.fold(name, words)
    }

    /// An address list header: "Name <email>" items separated by commas.
    static func addressHeader(_ name: String, _ addresses: [MailAddress]) -> String {
        var tokens: [String] = []
        for (index, address) in addresses.enumerated() {
            let separator = index < addresses.count - 1 ? "," : ""
            let email = self.sanitize(address.email).filter { $0 != " " && $0 != "<" && $0 != ">" }
            if let displayName = address.name.map(self.sanitize), !displayName.trimmingCharacters(in: .whitespaces).isEmpty {
                tokens.append(contentsOf: self.phrase(displayName))
                tokens.append("<\(email)>" + separator)
            } else {
                tokens.append(email + separator)
            }
        }
        return self.fold(name, tokens)
    }

    /// A display name as phrase tokens: bare words when they are atoms, a quoted-string when
    /// they hold specials, encoded-words when non-ASCII or too long to fit a line.
    static func phrase(_ name: String) -> [String] {
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        guard self.isPrintableASCII(trimmed), !trimmed.contains("=?"), trimmed.count <= 60 else {
            return self.encodedWords(trimmed)
        }
        let atext = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~ ")
        if trimmed.allSatisfy({ atext.contains($0) }) {
            return trimmed.split(separator: " ").map(String.init)
        }
        return [self.quoted(trimmed)]
    }

    /// `value` as an RFC 5322 quoted-string.
    static func quoted(_ value: String) -> String {
        var result = "\""
        for character in value {
            if character == "\"" || character == "\\" { result.append("\\") }
            result.append(character)
        }
        return result + "\""
    }

    /// The display form "Name <email>" for APIs that take one string (Resend): no encoded-words,
    /// but quoted when the name holds specials such as a comma.
    static func displayForm(_ address: MailAddress) -> String {
        let email = self.sanitize(address.email)
        guard let name = address.name.map(self.sanitize)?.trimmingCharacters(in: .whitespaces), !name.isEmpty else {
            return email
        }
        let specials = Set("()<>[]:;@\\,.\"")
        let shown = name.contains(where: { specials.contains($0) }) ? self.quoted(name) : name
        return "\(shown) <\(email)>"
    }

    /// RFC 2047 "B" encoded-words of at most `encodedWordBytes` UTF-8 bytes each, cut between
    /// Unicode scalars (a word must hold whole characters).
    static func encodedWords(_ text: String) -> [String] {
        var words: [String] = []
        var chunk: [UInt8] = []
        for scalar in text.unicodeScalars {
            let bytes = Array(String(scalar).utf8)
            if chunk.count + bytes.count > self.encodedWordBytes {
                words.append(self.encodedWord(chunk))
                chunk = []
            }
            chunk.append(contentsOf: bytes)
        }
        if !chunk.isEmpty || words.isEmpty {
            words.append(self.encodedWord(chunk))
        }
        return words
    }

    private static func encodedWord(_ bytes: [UInt8]) -> String {
        "=?UTF-8?B?" + Data(bytes).base64EncodedString() + "?="
    }

    /// "Name: token token …", breaking the line before a token that would pass the limit.
    static func fold(_ name: String, _ tokens: [String]) -> String {
        var lines: [String] = []
        var line = name + ":"
        var tokensOnLine = 0
        for token in tokens {
            // An empty token is a second space in a row; a line of only spaces is not allowed.
            if tokensOnLine > 0, !token.isEmpty, line.count + 1 + token.count > self.lineLimit {
                lines.append(line)
                line = ""
                tokensOnLine = 0
            }
            line += " " + token
            tokensOnLine += 1
        }
        lines.append(line)
        return lines.joined(separator: "\r\n")
    }

    /// RFC 5322 date-time in UTC, e.g. "Fri, 13 Feb 2009 23:31:30 +0000"; English names whatever
    /// the machine's locale.
    static func date(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 0)!
        let parts = calendar.dateComponents([.weekday, .day, .month, .year, .hour, .minute, .second], from: date)
        let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int?) -> String {
            let value = value ?? 0
            return value < 10 ? "0\(value)" : "\(value)"
        }
        let weekday = weekdays[((parts.weekday ?? 1) - 1) % 7]
        let month = months[((parts.month ?? 1) - 1) % 12]
        return "\(weekday), \(two(parts.day)) \(month) \(parts.year ?? 1970) \(two(parts.hour)):\(two(parts.minute)):\(two(parts.second)) +0000"
    }

    /// "<id@host>": spaces and control characters dropped, angle brackets added when missing.
    static func messageID(_ value: String) -> String {
        let clean = self.sanitize(value).filter { $0 != " " && $0 != "<" && $0 != ">" }
        return "<\(clean)>"
    }

    static func isPrintableASCII(_ value: String) -> Bool {
        value.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F }
    }
}

/// Quoted-printable (RFC 2045) of UTF-8 text, with line breaks as CRLF hard breaks.
enum QuotedPrintable {
    /// Encoded lines stay below 76 characters, the limit RFC 2045 sets, "=" soft breaks included.
    static let lineLimit = 76

    static func encode(_ text: String) -> String {
        // "\r\n", "\r" and "\n" all end a line; each becomes a CRLF hard break.
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        return normalized.split(separator: "\n", omittingEmptySubsequences: false)
            .map { self.encodeLine(Array($0.utf8)) }
            .joined(separator: "\r\n")
    }

    private static func encodeLine(_ bytes: [UInt8]) -> String {
        let hex = Array("0123456789ABCDEF")
        var output = ""
        var length = 0
        for (index, byte) in bytes.enumerated() {
            let isLast = index == bytes.count - 1
            let token: String
            if (byte == 0x20 || byte == 0x09) && !isLast {
                token = String(UnicodeScalar(byte))
            } else if byte >= 33, byte <= 126, byte != UInt8(ascii: "=") {
                token = String(UnicodeScalar(byte))
            } else {
                // Trailing spaces would be lost in transit, so they are escaped too.
                token = "=" + String(hex[Int(byte >> 4)]) + String(hex[Int(byte & 0x0F)])
            }
            // Keep room for the "=" of a soft break.
            if length + token.count > self.lineLimit - 1 {
                output += "=\r\n"
                length = 0
            }
            output += token
            length += token.count
        }
        return output
    }
}
