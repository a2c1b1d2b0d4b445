import Foundation

/// The retention timers of the data rights; each shows its runs on /admin/privacy.
public enum PrivacyJobs {
    /// Hourly: purges accounts whose deletion grace period is over (and finishes any purge that
    /// stopped half way), then drops goodbye mails already sent.
    public static func accountPurge(privacy: PrivacyService, interval: Duration = .seconds(3600), jitter: Double = 0.1) -> Job {
        Job(
            name: "account-purge", summary: "Purge accounts \(privacy.settings.purgeDays) days after their deletion was requested", interval: interval,
            jitter: jitter
        ) {
            // The longest wait until the next run, jitter included.
            try await privacy.purgeDue(ahead: Double(interval.components.seconds) * (1 + jitter))
            try await privacy.removeSentPurgeMails()
        }
    }

    /// Nightly: spent email tokens and invitations, mail past its retention, orphaned blobs.
    public static func retention(privacy: PrivacyService, interval: Duration = .seconds(24 * 3600)) -> Job {
        Job(name: "retention", summary: "Remove spent tokens and invitations, old mail, and orphaned blobs", interval: interval) {
            try await privacy.sweep()
        }
    }

    public static let names = ["account-purge", "retention", "database-upkeep"]
}
