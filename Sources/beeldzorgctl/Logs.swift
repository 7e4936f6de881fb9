import ArgumentParser
import Foundation

/// `beeldzorgctl logs`: beeldzorgd's journal, through journalctl (which it replaces, so
/// paging, `--follow` and Ctrl-C behave as journalctl's own).
struct LogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Show beeldzorgd's log from the systemd journal.",
        discussion: """
            Runs `journalctl -u beeldzorgd -o short-iso` with the options below (`-o json` with \
            --json, one JSON object per line). Reading the journal needs root or the \
            systemd-journal (or adm) group.

            Exit status: journalctl's own (0 on success); 1 when journalctl is not installed \
            or this machine keeps no journal; 4 when you may not read the system journal (not \
            root, not in systemd-journal or adm; the image's tech is in systemd-journal); 64 \
            wrong usage.
            """
    )

    @Option(
        name: .long,
        help: ArgumentHelp("Only entries from this time on: a duration back from now (30m, 1h, 2d) or a date/time (2026-11-20T14:00).",
                           valueName: "when"))
    var since: SinceArgument?

    @Flag(name: .long, help: "Keep printing new entries as they come (Ctrl-C stops).")
    var follow = false

    @Option(name: .long, help: "Show at most this many of the most recent entries.")
    var lines: Int?

    @Option(name: .long, help: "The systemd unit whose log to show.")
    var unit: String = "beeldzorgd"

    @Flag(name: .long, help: "One JSON object per entry (journalctl's JSON format).")
    var json = false

    func validate() throws {
        if let lines, lines < 1 { throw ValidationError("--lines must be at least 1") }
    }

    /// journalctl's arguments for these options (without the program name).
    func journalArguments(now: Date = Date()) -> [String] {
        var arguments = ["-u", unit, "-o", json ? "json" : "short-iso"]
        if let since {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = .current
            formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
            arguments += ["--since", formatter.string(from: since.date(now: now))]
        }
        if let lines { arguments += ["-n", String(lines)] }
        if follow { arguments.append("--follow") }
        if isatty(STDOUT_FILENO) == 0 || json { arguments.append("--no-pager") }
        return arguments
    }

    /// Groups whose members journalctl lets read the system journal (besides root).
    static let journalGroups = ["systemd-journal", "adm", "wheel"]

    /// Nil when this user may read the system journal; else why not. journalctl itself would
    /// show such a user only their own entries (none of beeldzorgd's) and exit 0.
    static func journalRefusal() -> String? {
        if geteuid() == 0 { return nil }
        let count = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(count, 0)))
        let got = getgroups(count, &groups)
        let mine = Set(groups.prefix(Int(max(got, 0))) + [getegid()])
        let allowed = journalGroups.compactMap { getgrnam($0)?.pointee.gr_gid }
        if allowed.contains(where: mine.contains) { return nil }
        let user = getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(geteuid())"
        return "\(user) may not read the system journal, so beeldzorgd's log would come out empty: run as root, or log in as a member of the systemd-journal group (the image's tech account is one)"
    }

    func run() throws {
        if let refusal = Self.journalRefusal() { fail(refusal, status: 4) }
        guard let journalctl = Self.findExecutable("journalctl") else {
            fail("journalctl is not installed here, so there is no systemd journal to read; run beeldzorgd in a terminal (`beeldzorgd --console`) to see its messages")
        }
        let journals = ["/run/log/journal", "/var/log/journal"]
        guard journals.contains(where: { FileManager.default.fileExists(atPath: $0) }) else {
            fail("this machine keeps no systemd journal (neither \(journals.joined(separator: " nor ")) exists); is systemd running here?")
        }
        let argv = [journalctl] + journalArguments()
        var cArguments = argv.map { strdup($0) } + [nil]
        execv(journalctl, &cArguments)
        fail("cannot run \(journalctl): \(String(cString: strerror(errno)))")
    }

    private func fail(_ message: String, status: Int32 = 1) -> Never {
        if json {
            let object: [String: Any] = ["ok": false, "error": ["code": "no-journal", "message": message]]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                print(String(decoding: data, as: UTF8.self))
            }
        } else {
            var standardError = FileHandle.standardError
            print("beeldzorgctl: \(message)", to: &standardError)
        }
        Foundation.exit(status)
    }

    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
