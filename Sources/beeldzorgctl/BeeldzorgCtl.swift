import ArgumentParser
import Control
public import Foundation

/// The installer's and field technician's tool on the tablet.
@main
struct BeeldzorgCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "beeldzorgctl",
        abstract: "Check, test and look after a Beeldzorg tablet.",
        discussion: """
            Talks to beeldzorgd over its control socket (root or the beeldzorg-tech group).

            Exit status: 0 all well; 1 the command ran but found a problem; 3 beeldzorgd is \
            not running; 4 no permission to use the control socket; 64 wrong usage.
            """,
        version: BeeldzorgCtl.version,
        subcommands: [StatusCommand.self, CallsCommand.self, ContactsCommand.self, PressCommand.self, DemoCommand.self,
                      DoctorCommand.self, TestCommand.self, LogsCommand.self, FactoryResetCommand.self,
                      ProvisionCommand.self, ScreenshotCommand.self, VolumeCommand.self]
    )

    static let version = "0.1.0"
}

/// Options every command that talks to the daemon shares.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "The daemon's control socket.")
    var socket: String = ProcessInfo.processInfo.environment["BEELDZORG_CONTROL_SOCKET"] ?? ControlProtocol.defaultSocketPath

    @Flag(name: .long, help: "Print machine-readable JSON instead of text.")
    var json = false

    var client: ControlClient { ControlClient(socketPath: socket) }
}

/// Exit statuses shared by every command (documented in the root command's help and README).
enum ExitStatus {
    static let problem = ExitCode(1)
    static let daemonNotRunning = ExitCode(3)
    static let permissionDenied = ExitCode(4)
}

extension ConnectionOptions {
    /// Sends a request; on failure prints one clear sentence (or JSON) and exits with the
    /// documented status.
    func send(_ request: ControlRequest) throws -> ControlResponse {
        do {
            let response = try client.send(request)
            if !response.ok {
                let error = response.error ?? ControlError(.internal, "unknown error")
                report(error: error.message, code: error.code.rawValue)
                throw ExitStatus.problem
            }
            return response
        } catch let failure as ControlClient.Failure {
            switch failure {
            case .daemonNotRunning:
                report(error: failure.description, code: "daemon-not-running")
                throw ExitStatus.daemonNotRunning
            case .permissionDenied:
                report(error: failure.description, code: "permission-denied")
                throw ExitStatus.permissionDenied
            case .io:
                report(error: failure.description, code: "io")
                throw ExitStatus.problem
            }
        }
    }

    func report(error message: String, code: String) {
        if json {
            let object: [String: Any] = ["ok": false, "error": ["code": code, "message": message]]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                print(String(decoding: data, as: UTF8.self))
            }
        } else {
            var standardError = FileHandle.standardError
            print("beeldzorgctl: \(message)", to: &standardError)
        }
    }

    /// Prints a result's JSON as the daemon sent it.
    func printJSON(_ response: ControlResponse) {
        print(String(decoding: response.result ?? Data("null".utf8), as: UTF8.self))
    }
}

extension FileHandle: @retroactive TextOutputStream {
    public func write(_ string: String) {
        write(Data(string.utf8))
    }
}

/// Colours only when standard output is a terminal and NO_COLOR is unset.
enum Terminal {
    static let colour = isatty(STDOUT_FILENO) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    static func good(_ text: String) -> String { colour ? "\u{1B}[32m\(text)\u{1B}[0m" : text }
    static func bad(_ text: String) -> String { colour ? "\u{1B}[31m\(text)\u{1B}[0m" : text }
    static func bold(_ text: String) -> String { colour ? "\u{1B}[1m\(text)\u{1B}[0m" : text }
}
