import ArgumentParser
import EaselApp
import EaselBlobs
import EaselCore
import EaselStore
import Foundation
import Logging

@main
struct Easel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "easel",
        abstract: "A self-hosted image studio for OpenAI's GPT Image models.",
        discussion: "Settings come from the command line (--port 8080), then the environment (EASEL_PORT), then ./.env, then defaults. See sample.env.",
        version: EaselVersion.current,
        subcommands: [Serve.self, Migrate.self, ConfigCommand.self, Jobs.self, Backup.self, Restore.self, AdminCommand.self, Keys.self, Credits.self, PolicyCommand.self, Version.self],
        defaultSubcommand: Serve.self
    )
}

/// Settings given on the command line, forwarded to swift-configuration.
struct SettingArguments: ParsableArguments {
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Settings, e.g. --port 8080 --data-dir /var/lib/easel (see sample.env).", valueName: "settings"))
    var values: [String] = []

    /// Loads and validates the configuration; a bad setting ends the process with one line
    /// naming it and exit code 2.
    func load() async throws -> EaselConfig {
        do {
            let reader = try await EaselConfig.reader(arguments: self.values, environment: ProcessInfo.processInfo.environment, dotEnvPath: ".env")
            return try EaselConfig.load(from: reader)
        } catch let error as ConfigError {
            Self.fail(error.description)
        } catch {
            Self.fail("cannot read the configuration: \(error)")
        }
    }

    static func fail(_ message: String, code: Int32 = 2) -> Never {
        FileHandle.standardError.write(Data("easel: \(message)\n".utf8))
        Foundation.exit(code)
    }
}

/// Starts logging and the services a command needs; reports start-up failures in one line.
func startServices(_ config: EaselConfig) async -> AppServices {
    LoggingSystem.bootstrap { label in EaselLogHandler(label: label, level: config.logLevel, format: config.logFormat) }
    var logger = Logger(label: "easel")
    logger.logLevel = config.logLevel
    do {
        return try await AppServices.start(config: config, logger: logger)
    } catch {
        SettingArguments.fail("cannot start: \(error)", code: 1)
    }
}

/// Holds the data folder for this process, or ends it when another easel process has it.
func lockDataFolder(_ config: EaselConfig) -> DataFolderLock {
    do {
        try FileManager.default.createDirectory(at: config.dataDirectory, withIntermediateDirectories: true)
        return try DataFolderLock(path: config.lockPath)
    } catch {
        SettingArguments.fail("\(error)", code: 1)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the website and API, and run the scheduled jobs (the default).")
    @OptionGroup var settings: SettingArguments

    func run() async throws {
        let config = try await self.settings.load()
        let lock = lockDataFolder(config)
        let services = await startServices(config)
        do {
            try await serve(services)
        } catch {
            services.logger.error("server stopped", metadata: ["error": "\(error)"])
            await services.shutdown()
            throw ExitCode(1)
        }
        await services.shutdown()
        withExtendedLifetime(lock) {}
        services.logger.info("stopped")
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Bring the database schema up to date and list the migrations.")
    @OptionGroup var settings: SettingArguments

    func run() async throws {
        let config = try await self.settings.load()
        try FileManager.default.createDirectory(at: config.dataDirectory, withIntermediateDirectories: true)
        do {
            let database = try AppDatabase.open(path: config.databasePath.path)
            for name in try database.appliedMigrations() { print("applied  \(name)") }
            print("database \(config.databasePath.path) is up to date")
        } catch {
            SettingArguments.fail("cannot migrate \(config.databasePath.path): \(error)", code: 1)
        }
    }
}

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Configuration tools.", subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate the configuration and print it, secrets masked (exit code 2 when invalid).")
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            let config = try await self.settings.load()
            for line in config.describe() { print(line) }
        }
    }
}

struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Scheduled jobs.", subcommands: [List.self, Run.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the jobs, their intervals and their last runs.")
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            let services = await startServices(try await self.settings.load())
            defer { Task { await services.shutdown() } }
            for job in services.scheduler.jobs {
                let last = try await services.database.recentJobRuns(job: job.name, limit: 1).first
                let lastText = last.map { "last \($0.outcome.rawValue) at \(ISO8601DateFormatter().string(from: $0.startedAt))" } ?? "never run"
                print("\(job.name)\tevery \(EaselConfigFormatting.duration(job.interval))\t\(lastText)\t\(job.summary)")
            }
            await services.shutdown()
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run one job now and record the run.")
        @Argument(help: "The job's name (see `easel jobs list`).") var name: String
        @OptionGroup var settings: SettingArguments

        func run() async throws {
            let services = await startServices(try await self.settings.load())
            do {
                let run = try await services.scheduler.runNow(self.name)
                await services.shutdown()
                if run.outcome == .failed {
                    SettingArguments.fail("job \(self.name) failed: \(run.error ?? "unknown error")", code: 1)
                }
                print("job \(self.name) \(run.outcome.rawValue)")
            } catch {
                await services.shutdown()
                SettingArguments.fail("\(error)", code: 1)
            }
        }
    }
}

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Back up the database now (or list the stored backups).")
    @Flag(help: "List the stored backups instead, newest first.") var list = false
    @OptionGroup var settings: SettingArguments

    func run() async throws {
        let services = await startServices(try await self.settings.load())
        do {
            if self.list {
                for backup in try await services.backups.list() { print("\(backup.key)\t\(backup.size) bytes") }
            } else {
                let backup = try await services.backups.backUp()
                print("backup stored as \(backup.key) (\(backup.size) bytes, \(services.blobs.kind) storage)")
            }
            await services.shutdown()
        } catch {
            await services.shutdown()
            SettingArguments.fail("backup failed: \(error)", code: 1)
        }
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the database with a backup; Easel must be stopped.",
        discussion: "FILE is a path, or the name of a stored backup as printed by `easel backup --list`. The current database is kept beside it as easel.db.before-restore-<time>."
    )
    @Argument(help: "A backup file, or a stored backup's name.") var file: String
    @OptionGroup var settings: SettingArguments

    func run() async throws {
        let config = try await self.settings.load()
        let lock = lockDataFolder(config)
        defer { withExtendedLifetime(lock) {} }
        var source = URL(fileURLWithPath: self.file)
        var downloaded: URL?
        if !FileManager.default.fileExists(atPath: source.path) {
            // Not a local file: look for a stored backup of that name.
            let services = await startServices(config)
            let name = self.file.hasPrefix(BackupService.keyPrefix) ? self.file : BackupService.keyPrefix + self.file
            guard let key = try? BlobKey(name), try await services.blobs.head(key) != nil else {
                await services.shutdown()
                SettingArguments.fail("no file \(self.file), and no stored backup of that name (see `easel backup --list`)", code: 1)
            }
            let local = config.workDirectory.appending(path: "download-\(UUID().uuidString).db")
            do {
                try await services.backups.download(key, to: local)
            } catch {
                await services.shutdown()
                SettingArguments.fail("cannot download \(key): \(error)", code: 1)
            }
            await services.shutdown()
            source = local
            downloaded = local
        }
        defer { if let downloaded { try? FileManager.default.removeItem(at: downloaded) } }
        do {
            let kept = try AppDatabase.restore(from: source, into: config.databasePath)
            // An older backup is brought up to this build's schema.
            _ = try AppDatabase.open(path: config.databasePath.path)
            print("restored \(self.file) into \(config.databasePath.path)")
            if let kept { print("the previous database is kept as \(kept.path)") }
        } catch {
            SettingArguments.fail("restore refused: \(error)", code: 1)
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version.")
    func run() { print("easel \(EaselVersion.current)") }
}
