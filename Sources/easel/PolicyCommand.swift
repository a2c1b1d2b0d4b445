import ArgumentParser
import EaselApp
import EaselCore
import EaselStore
import Foundation

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "The Privacy Policy and Terms: publish a new version, list the published ones.",
        subcommands: [Publish.self, List.self]
    )

    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record the version the pages now show; with --material, mail every active person and ask them to acknowledge it.",
            discussion: """
                Edit templates/policy-privacy.mustache or policy-terms.mustache, set EASEL_POLICY_VERSION and \
                EASEL_POLICY_UPDATED, restart, then publish that version. Works beside a running server: the version \
                and its mails are one database transaction; the server sends the mail on its next round.
                """
        )
        @Option(help: "The version to publish; must be EASEL_POLICY_VERSION (the default).") var version: String?
        @Flag(help: "An important change: mail active people and show them the notice until they acknowledge it.") var material = false
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            let services = await startServices(try await self.settings.load())
            do {
                let record = try await services.policy.publish(version: self.version, material: self.material)
                await services.shutdown()
                if record.material {
                    print("published version \(record.version) (last updated \(record.updatedOn)) as a material change: \(record.mailsQueued) notice(s) queued")
                } else {
                    print("published version \(record.version) (last updated \(record.updatedOn)); not material, nobody is mailed")
                }
            } catch let error as PolicyService.PublishError {
                await services.shutdown()
                SettingArguments.fail(error.description, code: 1)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The published versions, newest first.")
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            let services = await startServices(try await self.settings.load())
            let versions = try await services.database.policyVersions()
            await services.shutdown()
            print("pages show version \(services.policy.facts.version) (last updated \(services.policy.facts.updatedOn))")
            for version in versions {
                let kind = version.material ? "material" : "minor"
                print("\(version.version)\t\(version.updatedOn)\t\(kind)\tpublished \(version.publishedAt)\t\(version.mailsQueued) mail(s)")
            }
        }
    }
}
