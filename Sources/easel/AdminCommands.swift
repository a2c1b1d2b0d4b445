import ArgumentParser
import EaselApp
import EaselCore
import EaselStore
import Foundation

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "admin", abstract: "Administrator accounts.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a confirmed admin account, or make an existing account an admin.",
            discussion: "Without --password-file, the account gets no password and a password-reset link is printed (and mailed) so its owner chooses one."
        )
        @Option(help: "The admin's email address.") var email: String
        @Option(help: "A file whose first line is the password (keeps it out of the shell history).") var passwordFile: String?
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            let config = try await self.settings.load()
            var password: String?
            if let passwordFile {
                guard let data = FileManager.default.contents(atPath: passwordFile) else {
                    SettingArguments.fail("cannot read the password file \(passwordFile)", code: 1)
                }
                password = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
            }
            let services = await startServices(config)
            do {
                let (user, created) = try await services.accounts.createAdmin(email: self.email, password: password)
                var link: String?
                if password == nil, let id = user.id {
                    link = try await services.accounts.issuePasswordReset(for: user, id: id)
                    _ = try? await services.scheduler.runNow("mail")
                }
                await services.shutdown()
                print(created ? "created admin \(self.email)" : "\(self.email) is now an admin")
                if let link {
                    print("choose a password within an hour at: \(link)")
                }
            } catch let error as AccountService.SignUpError {
                await services.shutdown()
                let message: String =
                    switch error {
                    case .invalidEmail: "\"\(self.email)\" is not an email address"
                    case .password(let problem): "the password is not acceptable (\(problem)): use at least 8 characters, at most 72 bytes, not a common one"
                    default: "\(error)"
                    }
                SettingArguments.fail(message, code: 1)
            } catch {
                await services.shutdown()
                SettingArguments.fail("\(error)", code: 1)
            }
        }
    }
}
