import EaselCore
import EaselStore
import Testing

@Suite("What analytics read from a User-Agent")
struct VisitorTraitsTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var userAgent: String
        var device: PageViewEntry.Device
        var os: String?
        var browser: String?
        var robot: Bool
        var testDescription: String { "\(self.os ?? "no OS") \(self.device)" }
    }

    static let cases: [Case] = [
        Case(
            userAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            device: .mobile, os: "iOS", browser: "Safari", robot: false),
        Case(
            userAgent: "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            device: .tablet, os: "iOS", browser: "Safari", robot: false),
        Case(
            userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
            device: .mobile, os: "Android", browser: "Chrome", robot: false),
        Case(
            userAgent: "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            device: .tablet, os: "Android", browser: "Chrome", robot: false),
        Case(
            userAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0",
            device: .desktop, os: "Windows", browser: "Firefox", robot: false),
        Case(
            userAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
            device: .desktop, os: "macOS", browser: "Safari", robot: false),
        Case(userAgent: "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", device: .desktop, os: nil, browser: nil, robot: true),
        Case(userAgent: "curl/8.5.0", device: .desktop, os: nil, browser: "curl", robot: true),
        Case(userAgent: "  ", device: .desktop, os: nil, browser: nil, robot: true),
    ]

    @Test("Device class, operating system and browser family from the User-Agent; robots recognised", arguments: Self.cases)
    func traits(_ example: Case) {
        let traits = VisitorTraits(userAgent: example.userAgent)
        #expect(traits.device == example.device)
        #expect(traits.os == example.os)
        #expect(traits.browser == example.browser)
        #expect(traits.isRobot == example.robot)
    }
}
