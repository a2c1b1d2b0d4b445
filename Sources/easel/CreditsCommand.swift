import ArgumentParser
import EaselApp
import EaselCore
import EaselStore
import Foundation

struct Credits: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Credits: grant them, check the ledger.", subcommands: [Grant.self, Verify.self])

    struct Grant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give an account credits, with a reason kept in its ledger.",
            discussion: "Works beside a running server: the grant is one database transaction."
        )
        @Option(help: "The account's email address.") var email: String
        @Option(help: "Credits to add (a whole number above 0).") var amount: Int
        @Option(help: "Why, in a few words; shown in the person's ledger.") var reason: String
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            guard self.amount > 0, self.amount <= 100_000_000 else { SettingArguments.fail("--amount must be a whole number from 1 to 100000000", code: 1) }
            let reason = self.reason.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !reason.isEmpty, reason.count <= 200 else { SettingArguments.fail("--reason must say why, in at most 200 characters", code: 1) }
            let services = await startServices(try await self.settings.load())
            guard let email = AccountService.normalizedEmail(self.email), let user = try await services.database.user(email: email) else {
                await services.shutdown()
                SettingArguments.fail("there is no account with the email \(self.email)", code: 1)
            }
            let entry = try await services.database.grantCredits(userID: user.id!, amount: self.amount, reason: reason)
            await services.shutdown()
            print("granted \(self.amount) credits to \(user.email): balance now \(entry.balanceAfter)")
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute every balance from the ledger; exit 1 listing differences, 0 when all agree."
        )
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            let services = await startServices(try await self.settings.load())
            let differences = try await services.database.verifyCreditBalances()
            await services.shutdown()
            if differences.isEmpty {
                print("every balance matches its ledger")
                return
            }
            for difference in differences { print(difference.description) }
            print("\(differences.count) account(s) with differences")
            throw ExitCode(1)
        }
    }
}
