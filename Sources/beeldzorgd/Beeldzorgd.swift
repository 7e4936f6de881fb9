public import ArgumentParser
import BeeldzorgConfig
import Daemon
public import Foundation
public import Logging

/// The tablet daemon: the button, the call, the centrale.
@main
struct Beeldzorgd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "beeldzorgd",
        abstract: "The Beeldzorg tablet daemon: one button that always reaches a person.",
        discussion: """
            Reads its configuration, opens its store, announces READY=1 to systemd and then \
            serves the button, incoming calls and the control socket until SIGTERM.

            Exit status: 0 after a clean shutdown (or a configuration that passed \
            --check-config); 78 (EX_CONFIG) when the configuration or a file it names is \
            unusable — each message names the key, its line and the file (the unit has \
            RestartPreventExitStatus=78, so systemd does not loop on it); 1 any other failure.

            With --on-config-fault needs-service (the systemd unit) such a fault does not end \
            the daemon: it stays up showing "needs service" on the screen and the status \
            LED, answers `beeldzorgctl status` with every fault, never registers, and exits 0 \
            on SIGTERM; 78 only when even that is impossible. It checks the configuration \
            again every 2 s and exits 75 (EX_TEMPFAIL) once it passes, so systemd's \
            Restart=always starts the daemon for real.
            """,
        version: BeeldzorgDaemon.version
    )

    @Option(name: .long, help: "Configuration file.")
    var config: String = Configuration.defaultPath

    @Flag(name: .long, help: "Check the configuration file and every file it names (password, token, CA files, font, prompts), then exit.")
    var checkConfig = false

    @Option(name: .long, help: ArgumentHelp("With --check-config: judge the files for this user (default: beeldzorg when run as root and it exists, else yourself).", valueName: "user"))
    var user: String?

    enum OnConfigFault: String, ExpressibleByArgument, CaseIterable {
        case exit
        case needsService = "needs-service"
    }

    @Option(name: .long, help: ArgumentHelp("At start, a configuration fault either exits with status 78 (exit) or keeps the daemon up showing \"needs service\" on screen, LED and control socket (needs-service, what the systemd unit uses).", valueName: "exit|needs-service"))
    var onConfigFault: OnConfigFault = .exit

    @Flag(name: .long, help: "Show states and spoken prompts as lines on standard output (the demo's screen).")
    var console = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    mutating func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = JournalLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "beeldzorgd")

        var standardError = FileHandle.standardError
        let configuration: Configuration
        do {
            configuration = try Configuration.load(path: config)
        } catch {
            logger.critical("configuration refused: \(error)")
            print("beeldzorgd: \(error)", to: &standardError)
            try await needsService(faults: ["\(error) (in \(config))"], configuration: nil, logger: logger)
        }
        let reader: ConfigurationFiles.Reader
        if let user {
            guard let named = ConfigurationFiles.Reader.named(user) else {
                print("beeldzorgd: --user \(user): no such user", to: &standardError)
                throw ExitCode(64)
            }
            reader = named
        } else {
            reader = checkConfig ? .daemonUser : .current
        }
        let problems = ConfigurationFiles.check(configuration, as: reader)
        let faults = problems.filter { $0.severity == .fault }
        for problem in problems where problem.severity == .warning {
            logger.warning("configuration: \(problem)")
            if checkConfig { print("beeldzorgd: warning: \(problem)", to: &standardError) }
        }
        if !faults.isEmpty {
            for fault in faults {
                logger.critical("configuration refused: \(fault)")
                print("beeldzorgd: \(fault) (in \(config))", to: &standardError)
            }
            try await needsService(faults: faults.map { "\($0)" }, configuration: configuration, logger: logger)
        }
        if checkConfig {
            print("\(config): ok (\(configuration.centrale.posts.count) posts, \(configuration.centrale.policy.rawValue), \(configuration.transport.rawValue); files checked for \(reader.name))")
            return
        }
        try await BeeldzorgDaemon.run(configuration: configuration, console: console, logger: logger)
    }

    /// A configuration fault at start: exit 78, or (`--on-config-fault needs-service`, never
    /// with --check-config) stay up saying so until SIGTERM, then exit 0.
    func needsService(faults: [String], configuration: Configuration?, logger: Logger) async throws -> Never {
        guard !checkConfig, onConfigFault == .needsService else { throw ExitCode(78) }
        let path = config
        let outcome: NeedsServiceMode.Outcome
        do {
            outcome = try await NeedsServiceMode.run(faults: faults, settings: .init(configuration: configuration),
                                                     logger: logger) {
                guard let again = try? Configuration.load(path: path) else { return false }
                return !ConfigurationFiles.check(again, as: .current).contains { $0.severity == .fault }
            }
        } catch {
            logger.critical("needs-service mode failed", metadata: ["error": "\(error)"])
            throw ExitCode(78)
        }
        switch outcome {
        case .stopped: throw ExitCode.success
        case .recovered: throw ExitCode(75)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

extension FileHandle: @retroactive TextOutputStream {
    public func write(_ string: String) {
        write(Data(string.utf8))
    }
}
