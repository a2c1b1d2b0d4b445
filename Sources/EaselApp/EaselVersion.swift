public enum EaselVersion {
    public static let current = "0.1.0"
}

public enum EaselConfigFormatting {
    public static func duration(_ duration: Duration) -> String { EaselConfig.formatDuration(duration) }
}
