import ArgumentParser
import EaselApp
import EaselCore
import EaselStore
import Foundation

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "API keys.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an API key for an account and print it (the key alone on the last line).",
            discussion: "Scopes: \(APIScope.allCases.map { "\($0.rawValue): \($0.summary)" }.joined(separator: "; ")). "
                + "The key is shown only now; Easel keeps only a fingerprint of it."
        )
        @Option(help: "The account's email address.") var email: String
        @Option(help: "Comma-separated scopes, e.g. generate,read.") var scopes: String
        @Option(help: "A name that says where the key is used.") var name = "Command line"
        @Option(help: "Days until the key expires (default: never).") var expiresDays: Int?
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            // Checked before anything starts, so a typo costs nothing and prints one line.
            let scopes: Set<APIScope>
            let expiresAt: Date?
            do {
                scopes = try APIScope.parse(self.scopes)
                guard !scopes.isEmpty else { throw APIKeyService.CreateError.noScopes }
                expiresAt = try APIKeyService.expiry(days: self.expiresDays)
            } catch {
                SettingArguments.fail("\(error)", code: 1)
            }
            let services = await startServices(try await self.settings.load())
            do {
                guard let email = AccountService.normalizedEmail(self.email), let user = try await services.database.user(email: email) else {
                    await services.shutdown()
                    SettingArguments.fail("there is no account with the email \(self.email)", code: 1)
                }
                let new = try await services.apiKeys.create(for: user, name: self.name, scopes: scopes, expiresAt: expiresAt)
                await services.shutdown()
                let expiry = new.key.expiresAt.map { "expires \(ISO8601DateFormatter().string(from: $0))" } ?? "does not expire"
                print("created API key \(new.key.prefix) \"\(new.key.name)\" for \(user.email) with scopes \(APIScope.list(scopes)); it \(expiry)")
                print("it is shown only now: store it safely")
                print(new.secret)
            } catch let error as APIKeyService.CreateError {
                await services.shutdown()
                SettingArguments.fail(error.description, code: 1)
            } catch {
                await services.shutdown()
                SettingArguments.fail("cannot create the key: \(error)", code: 1)
            }
        }
    }
}
