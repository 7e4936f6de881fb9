public import Foundation
public import Logging

/// One line per event on standard error, in the form the systemd journal reads: a `<N>`
/// syslog priority prefix when stderr is the journal (`JOURNAL_STREAM` is set), a timestamp
/// otherwise. Metadata whose key names a secret is never printed.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let toJournal: Bool

    /// Keys whose values are secrets or personal data beyond what a technician needs.
    static let redactedKeys: Set<String> = ["password", "token", "authorization", "key", "srtp-key", "credentials", "secret"]

    public init(label: String, toJournal: Bool = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil) {
        self.label = label
        self.toJournal = toJournal
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let line = Self.format(
            level: event.level, label: label, message: "\(event.message)",
            metadata: metadata.merging(event.metadata ?? [:]) { _, new in new },
            journal: toJournal, now: Date()
        )
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    static func format(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata,
                       journal: Bool, now: Date) -> String {
        var line = journal ? "<\(priority(level))>" : "\(timestamp(now)) \(level.rawValue.uppercased()) "
        line += "\(label): \(message)"
        for key in metadata.keys.sorted() {
            let value = redactedKeys.contains(key.lowercased()) ? "<redacted>" : "\(metadata[key]!)"
            line += " \(key)=\(value.contains(" ") ? "\"\(value)\"" : value)"
        }
        // One event is one line, whatever the message holds.
        return line.replacingOccurrences(of: "\n", with: "\\n")
    }

    private static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    private static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
    }
}
