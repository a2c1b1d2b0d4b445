import ArgumentParser
import EaselApp
import EaselCore
import EaselStore
import Foundation

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "API keys, and the master key that protects everyone's data keys.", subcommands: [Create.self, RotateMaster.self, Status.self]
    )

    struct RotateMaster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-master",
            abstract: "Make a new master key, re-wrap every data key under it, and drop the old one; Easel must be stopped.",
            discussion: "Copy the new master key file somewhere safe afterwards (see docs/encryption.md): backups of the database made "
                + "before the rotation need the old key, and become unreadable once it is gone."
        )
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            let config = try await self.settings.load()
            let lock = lockDataFolder(config)
            defer { withExtendedLifetime(lock) {} }
            guard FileManager.default.fileExists(atPath: config.masterKeyPath.path) else {
                SettingArguments.fail("there is no master key file at \(config.masterKeyPath.path): start Easel once to make one, or set EASEL_MASTER_KEY_FILE", code: 1)
            }
            do {
                let database = try AppDatabase.open(path: config.databasePath.path)
                let rotation = try await DataKeys.rotateMaster(database: database, keyFile: config.masterKeyPath)
                print("re-wrapped \(rotation.rewrapped) data keys under the new master key \(rotation.newKeyID)")
                print("\(config.masterKeyPath.path) now holds only the new key: copy it somewhere safe")
                print("the retired key \(rotation.retiredKeyIDs.joined(separator: ", ")) is in \(rotation.retiredFile.path): backups made before now need it; keep it with them, destroy it when they expire")
            } catch {
                SettingArguments.fail("rotation stopped: \(error); the key file still opens every data key, so run it again once the cause is fixed", code: 1)
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check that the master key file opens every person's data key (exit code 1 when one does not)."
        )
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            let config = try await self.settings.load()
            do {
                let database = try AppDatabase.open(path: config.databasePath.path)
                let check = try await DataKeys.check(database: database, keyFile: config.masterKeyPath)
                print("master key file: \(config.masterKeyPath.path) (\(check.masterKeyIDs.joined(separator: ", ")))")
                print("data keys: \(check.dataKeys), of which unreadable: \(check.unreadable.count)")
                if !check.unreadable.isEmpty {
                    SettingArguments.fail("the data keys of accounts \(check.unreadable.map(String.init).joined(separator: ", ")) do not open: restore the master key file from your copy", code: 1)
                }
            } catch {
                SettingArguments.fail("\(error)", code: 1)
            }
        }
    }

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
