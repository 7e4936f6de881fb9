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

            Exit status: 0 after a clean shutdown; 78 (EX_CONFIG) when the configuration is \
            unusable — the message names the key and line.
            """,
        version: BeeldzorgDaemon.version
    )

    @Option(name: .long, help: "Configuration file.")
    var config: String = Configuration.defaultPath

    @Flag(name: .long, help: "Check the configuration file and exit.")
    var checkConfig = false

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

        let configuration: Configuration
        do {
            configuration = try Configuration.load(path: config)
        } catch {
            logger.critical("configuration refused: \(error)")
            var standardError = FileHandle.standardError
            print("beeldzorgd: \(error)", to: &standardError)
            throw ExitCode(78)
        }
        if checkConfig {
            print("\(config): ok (\(configuration.centrale.posts.count) posts, \(configuration.centrale.policy.rawValue), \(configuration.transport.rawValue))")
            return
        }
        try await BeeldzorgDaemon.run(configuration: configuration, console: console, logger: logger)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

extension FileHandle: @retroactive TextOutputStream {
    public func write(_ string: String) {
        write(Data(string.utf8))
    }
}
