import ArgumentParser
import Control
import Foundation
import Store

/// `beeldzorgctl calls`: the recent call log, newest first.
struct CallsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calls",
        abstract: "Show recent calls, newest first.",
        discussion: """
            Times are the tablet's local time in the table and UTC (ISO 8601) in --json. \
            TALK is the time from answer to hang-up. UPLOAD says whether the server has \
            the record yet. Asks beeldzorgd (root or the beeldzorg-tech group); while it is \
            stopped, reads the database directly (root).

            Exit status: 0 listed; 1 no database or it cannot be read; 4 not allowed (not root \
            or beeldzorg-tech, or beeldzorgd is stopped and you are not root).
            """
    )

    @OptionGroup var options: DatabaseOptions

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Only calls started at or after this: a duration back from now (30m, 24h, 7d) or a date/time (2026-11-20, 2026-11-20T14:00, 2026-11-20T13:00:00Z).",
            valueName: "when"))
    var since: SinceArgument?

    @Option(name: .long, help: "Show at most this many calls.")
    var limit: Int = 50

    func validate() throws {
        guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        let from = since?.date(now: Date())
        let calls = try options.askDaemon(ControlRequest(cmd: .calls, limit: limit, since: from), as: [CallRecord].self)
            ?? options.openStore().recentCalls(limit: limit, since: from)
        if options.json {
            print(try Self.json(calls))
        } else {
            print(Self.table(calls, timeZone: .current), terminator: "")
        }
    }

    static func table(_ calls: [CallRecord], timeZone: TimeZone) -> String {
        if calls.isEmpty { return "No calls.\n" }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = timeZone
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        var table = TextTable(["STARTED", "DIR", "PEER", "OUTCOME", "TALK", "POSTS", "UPLOAD", "REASON"])
        for call in calls {
            var talk = "-"
            if let answered = call.answeredAt, let ended = call.endedAt {
                let seconds = max(0, Int(ended.timeIntervalSince(answered).rounded()))
                talk = String(format: "%d:%02d", seconds / 60, seconds % 60)
            }
            table.add([
                formatter.string(from: call.startedAt),
                call.direction == .outgoing ? "out" : "in",
                call.peerName.map { "\($0) (\(call.peerURI))" } ?? call.peerURI,
                call.outcome?.rawValue ?? "in progress",
                talk,
                call.postsTried.isEmpty ? "-" : String(call.postsTried.count),
                call.uploadState.rawValue,
                call.failureReason ?? "",
            ])
        }
        return table.render()
    }

    /// Every key always present (null when empty); dates ISO 8601 UTC with milliseconds.
    struct JSONCall: Encodable {
        var call: CallRecord
        enum Keys: String, CodingKey {
            case id, direction, peerURI, peerName, startedAt, answeredAt, endedAt, outcome
            case postsTried, failureReason, uploadState
        }
        func encode(to encoder: any Encoder) throws {
            func iso(_ date: Date?) -> String? {
                date?.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
            }
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(call.id, forKey: .id)
            try c.encode(call.direction.rawValue, forKey: .direction)
            try c.encode(call.peerURI, forKey: .peerURI)
            try c.encode(call.peerName, forKey: .peerName)
            try c.encode(iso(call.startedAt), forKey: .startedAt)
            try c.encode(iso(call.answeredAt), forKey: .answeredAt)
            try c.encode(iso(call.endedAt), forKey: .endedAt)
            try c.encode(call.outcome?.rawValue, forKey: .outcome)
            try c.encode(call.postsTried, forKey: .postsTried)
            try c.encode(call.failureReason, forKey: .failureReason)
            try c.encode(call.uploadState.rawValue, forKey: .uploadState)
        }
    }

    static func json(_ calls: [CallRecord]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(calls.map(JSONCall.init)), as: UTF8.self)
    }
}

/// `--since`: either a span back from now or a point in time.
enum SinceArgument: ExpressibleByArgument {
    case ago(TimeInterval)
    case at(Date)

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces)
        if let unit = text.last, let amount = Double(text.dropLast()), amount >= 0 {
            let scale: Double? = switch unit {
            case "s": 1
            case "m": 60
            case "h": 3600
            case "d": 86_400
            default: nil
            }
            if let scale {
                self = .ago(amount * scale)
                return
            }
        }
        // Date-times with a zone (Z or ±hh:mm) are absolute; without one they are local.
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) {
            self = .at(date)
            return
        }
        for format in ["yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd HH:mm", "yyyy-MM-dd"] {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = .current
            formatter.dateFormat = format
            if let date = formatter.date(from: text) {
                self = .at(date)
                return
            }
        }
        return nil
    }

    func date(now: Date) -> Date {
        switch self {
        case .ago(let interval): now.addingTimeInterval(-interval)
        case .at(let date): date
        }
    }

    static var defaultCompletionKind: CompletionKind { .default }
}
