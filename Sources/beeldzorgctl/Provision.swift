import ArgumentParser
import BeeldzorgConfig
import Control
import Foundation
import Provisioning
import Store

/// `beeldzorgctl provision status|sync`: the organisation's server as the tablet sees it.
struct ProvisionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provision",
        abstract: "Show or run provisioning (contacts and settings from the server) and the call-log upload.",
        subcommands: [ProvisionStatusCommand.self, ProvisionSyncCommand.self, ProvisionSetupCommand.self]
    )
}

struct ProvisionStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the last provisioning attempt, the ETag, the contacts and the upload outbox.",
        discussion: """
            Asks beeldzorgd; when it is not running, reads the database directly (read-only). \
            Times are local in the text and UTC (ISO 8601) in --json.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .long, help: "The tablet's database, read when beeldzorgd is not running.")
    var database: String = ProcessInfo.processInfo.environment["BEELDZORG_DATABASE"] ?? DatabaseOptions.defaultPath

    func run() throws {
        let status: ProvisioningStatus
        var fromDaemon = true
        do {
            let response = try connection.client.send(ControlRequest(cmd: .provisionStatus))
            guard response.ok else {
                let error = response.error ?? ControlError(.internal, "unknown error")
                connection.report(error: error.message, code: error.code.rawValue)
                throw ExitStatus.problem
            }
            status = try response.decodeResult(ProvisioningStatus.self)
        } catch ControlClient.Failure.daemonNotRunning {
            fromDaemon = false
            var options = DatabaseOptions()
            options.database = database
            options.json = connection.json
            status = try ProvisioningStatus(store: try options.openStore())
        }
        if connection.json {
            print(String(decoding: try ControlCoding.encoder.encode(status), as: UTF8.self))
        } else {
            print(Self.text(status, fromDaemon: fromDaemon, timeZone: .current), terminator: "")
        }
        if status.problem != nil { throw ExitStatus.problem }
    }

    static func text(_ status: ProvisioningStatus, fromDaemon: Bool, timeZone: TimeZone) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = timeZone
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        func time(_ date: Date?) -> String { date.map(formatter.string(from:)) ?? "never" }
        var lines: [(String, String)] = []
        if !fromDaemon {
            lines.append(("source", "database (beeldzorgd is not running)"))
        } else if status.configured == false && status.url == nil {
            lines.append(("server", "not configured (no provisioning: in beeldzorgd.yaml)"))
        } else {
            lines.append(("server", status.url ?? "?"))
        }
        if let problem = status.problem { lines.append(("problem", problem)) }
        lines.append(("last attempt", time(status.lastAttemptAt)))
        lines.append(("result", status.lastResult ?? "-"))
        lines.append(("applied", time(status.appliedAt)))
        lines.append(("etag", status.etag ?? "-"))
        lines.append(("contacts", String(status.contacts)))
        lines.append(("outbox", status.outboxLength == 0 ? "empty" : "\(status.outboxLength) waiting"))
        if let oldest = status.oldestPendingAt {
            var text = "\(time(oldest)) (\(status.oldestPendingKind ?? "?")"
            text += ", \(status.oldestPendingAttempts ?? 0) attempts, next \(time(status.oldestPendingNextAttemptAt)))"
            lines.append(("oldest pending", text))
        }
        if let at = status.lastUploadAt {
            lines.append(("last upload", "\(time(at)): \(status.lastUploadResult ?? "-")"))
        }
        let width = lines.map(\.0.count).max() ?? 0
        return lines.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 + "\n" }.joined()
    }
}

struct ProvisionSyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Ask beeldzorgd to fetch the provisioning document and upload the outbox now.",
        discussion: "Needs a running beeldzorgd. Exit status 1 when the document was rejected or the server could not be reached."
    )

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let client = ControlClient(socketPath: connection.socket, timeout: .seconds(15))
        let response: ControlResponse
        do {
            response = try client.send(ControlRequest(cmd: .provisionSync))
        } catch ControlClient.Failure.daemonNotRunning(let path, _) {
            connection.report(error: "beeldzorgd must run for a sync (no answer on \(path)); start it with systemctl start beeldzorgd", code: "daemon-not-running")
            throw ExitStatus.daemonNotRunning
        } catch let failure as ControlClient.Failure {
            connection.report(error: failure.description, code: "io")
            throw ExitStatus.problem
        }
        guard response.ok else {
            let error = response.error ?? ControlError(.internal, "unknown error")
            connection.report(error: error.message, code: error.code.rawValue)
            throw ExitStatus.problem
        }
        let result = try response.decodeResult(ProvisioningSyncResult.self)
        if connection.json {
            connection.printJSON(response)
        } else {
            print("provisioning: \(result.detail)")
            print("upload: \(result.delivered) delivered, \(result.failed) failed, \(result.rejected) rejected; \(result.status.outboxLength) waiting")
        }
        if result.result == "rejected" || result.result == "failed" { throw ExitStatus.problem }
    }
}

/// `beeldzorgctl provision setup`: the installer's one command to point a tablet at its
/// organisation's server: writes the bearer token to its own 0600 file and the
/// `provisioning:` section into beeldzorgd.yaml (checked as a whole before it is written).
struct ProvisionSetupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "setup",
        abstract: "Write the provisioning token file and the provisioning section of beeldzorgd.yaml.",
        discussion: """
            Refuses a configuration that already has a provisioning section (edit it by hand). \
            Restart beeldzorgd afterwards (systemctl restart beeldzorgd).
            """
    )

    @Option(name: .long, help: "https:// URL of this tablet's provisioning document.")
    var url: String

    @Option(name: .long, help: "Read the bearer token from this file (preferred: it stays out of the process list).")
    var tokenFile: String?

    @Option(name: .long, help: "The bearer token itself (visible to other local users while this runs; prefer --token-file).")
    var token: String?

    @Option(name: .long, help: "PEM file with the organisation server's CA, to pin.")
    var caFile: String?

    @Option(name: .long, help: "Minutes between fetches (1…1440).")
    var intervalMinutes: Int = 60

    @Option(name: .long, help: "The daemon's configuration file.")
    var config: String = Configuration.defaultPath

    @Option(name: .long, help: "Where to store the token (mode 0600).")
    var tokenPath: String = "/etc/beeldzorg/credentials/provisioning-token"

    func validate() throws {
        guard (tokenFile == nil) != (token == nil) else {
            throw ValidationError("give exactly one of --token-file and --token")
        }
    }

    func run() throws {
        let secret: String
        if let tokenFile {
            guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
                throw ValidationError("cannot read \(tokenFile)")
            }
            secret = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        } else {
            secret = token?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        }
        guard !secret.isEmpty, !secret.contains(where: \.isWhitespace) else {
            throw ValidationError("the token is empty or contains spaces")
        }
        guard let current = try? String(contentsOfFile: config, encoding: .utf8) else {
            fail("cannot read \(config)")
            throw ExitStatus.problem
        }
        if current.split(separator: "\n").contains(where: { $0.hasPrefix("provisioning:") }) {
            fail("\(config) already has a provisioning section; edit it by hand")
            throw ExitStatus.problem
        }
        var section = "\nprovisioning:\n  url: \(Self.quoted(url))\n  token_file: \(Self.quoted(tokenPath))\n"
        if let caFile { section += "  ca_file: \(Self.quoted(caFile))\n" }
        section += "  interval_minutes: \(intervalMinutes)\n"
        let updated = (current.hasSuffix("\n") ? current : current + "\n") + section
        // The daemon must accept the result; otherwise nothing is written.
        do {
            _ = try Configuration.parse(updated)
        } catch {
            fail("the new configuration would be refused: \(error)")
            throw ExitStatus.problem
        }
        do {
            try Self.writePrivate(secret + "\n", to: tokenPath)
            try updated.write(toFile: config, atomically: true, encoding: .utf8)
        } catch {
            fail("\(error)")
            throw ExitStatus.problem
        }
        print("provisioning: \(url)")
        print("token written to \(tokenPath) (mode 0600); restart beeldzorgd to use it")
    }

    private func fail(_ message: String) {
        FileHandle.standardError.write(Data("beeldzorgctl: \(message)\n".utf8))
    }

    private static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// Creates the file with mode 0600 from the start (never readable by others, not even
    /// briefly), replacing an older one.
    private static func writePrivate(_ text: String, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let temporary = path + ".new"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw ValidationError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        // Run as root on the tablet: the secret is the daemon's (user beeldzorg, which alone may
        // read it; beeldzorgd refuses a token it does not own at start).
        if geteuid() == 0, let owner = getpwnam("beeldzorg") {
            guard fchown(fd, owner.pointee.pw_uid, owner.pointee.pw_gid) == 0 else {
                close(fd)
                unlink(temporary)
                throw ValidationError("cannot give \(temporary) to beeldzorg: \(String(cString: strerror(errno)))")
            }
        }
        let bytes = Array(text.utf8)
        let written = write(fd, bytes, bytes.count)
        fsync(fd)
        close(fd)
        guard written == bytes.count, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ValidationError("cannot write \(path)")
        }
    }
}
