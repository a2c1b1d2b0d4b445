import Dispatch
import Foundation
import HummingbirdBcrypt

/// Password rules (SECURITY.md): at least 8 characters (2FA is available), at most 72 bytes
/// (bcrypt reads no further, so longer ones are refused rather than silently cut), not a
/// common password, not the email address.
public enum PasswordPolicy {
    public static let minimumLength = 8
    public static let maximumBytes = 72

    public enum Problem: Error, Equatable {
        case tooShort, tooLong, common, sameAsEmail
    }

    public static func check(_ password: String, email: String) -> Problem? {
        if password.count < self.minimumLength { return .tooShort }
        if password.utf8.count > self.maximumBytes { return .tooLong }
        let lowered = password.lowercased()
        if self.common.contains(lowered) { return .common }
        if lowered == email.lowercased() || lowered == email.lowercased().split(separator: "@").first.map(String.init) { return .sameAsEmail }
        return nil
    }

    /// The most used passwords of 8 characters or more, from public breach lists.
    static let common: Set<String> = [
        "password", "password1", "password12", "password123", "12345678", "123456789", "1234567890", "12341234",
        "11111111", "00000000", "87654321", "88888888", "qwertyui", "qwerty123", "qwertyuiop", "1q2w3e4r",
        "1qaz2wsx", "iloveyou", "sunshine", "princess", "football", "baseball", "welcome1", "welcome123",
        "abc12345", "abcd1234", "admin123", "administrator", "letmein1", "trustno1", "superman", "starwars",
        "passw0rd", "p@ssw0rd", "p@ssword", "changeme", "whatever", "computer", "internet", "michelle",
        "jennifer", "corvette", "mercedes", "football1", "liverpool", "chelsea1", "charlie1", "monkey123",
        "dragon12", "master12", "shadow12", "asdfghjk", "asdf1234", "zxcvbnm1", "q1w2e3r4", "aa123456",
        "123123123", "987654321", "11223344", "qazwsxedc", "iloveyou1", "lovely12", "secret123", "hello123",
        "easel123", "gptimage", "openai123",
    ]
}

/// bcrypt hashing on a queue of its own: at cost 12 a hash takes about a quarter of a second,
/// which must not stall the threads that serve requests.
public struct PasswordHasher: Sendable {
    public let cost: UInt8
    private let queue = DispatchQueue(label: "easel.bcrypt", attributes: .concurrent)

    /// Cost 12 in production; tests may pass a lower one to run fast.
    public init(cost: UInt8 = 12) {
        self.cost = cost
    }

    public func hash(_ password: String) async -> String {
        let cost = self.cost
        return await withCheckedContinuation { continuation in
            self.queue.async { continuation.resume(returning: Bcrypt.hash(password, cost: cost)) }
        }
    }

    public func verify(_ password: String, hash: String) async -> Bool {
        await withCheckedContinuation { continuation in
            self.queue.async { continuation.resume(returning: Bcrypt.verify(password, hash: hash)) }
        }
    }

    /// True when `hash` was made with a lower cost than this hasher's ("$2b$10$…").
    public func needsRehash(_ hash: String) -> Bool {
        let parts = hash.split(separator: "$")
        guard parts.count >= 2, let cost = UInt8(parts[1]) else { return true }
        return cost < self.cost
    }
}
