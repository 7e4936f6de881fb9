import ArgumentParser
import Control
import Foundation
import Provisioning
import Store

/// `beeldzorgctl provision status|sync`: the organisation's server as the tablet sees it.
struct ProvisionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provision",
        abstract: "Show or run provisioning (contacts and settings from the server) and the call-log upload.",
        subcommands: [ProvisionStatusCommand.self, ProvisionSyncCommand.self]
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
        var options = connection
        options.socket = connection.socket
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
