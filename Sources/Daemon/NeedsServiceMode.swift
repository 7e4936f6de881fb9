public import BeeldzorgConfig
import Control
import Devices
import Foundation
public import Logging
import NIOPosix
import ServiceLifecycle
import Synchronization

/// What the daemon does when it cannot start for a configuration reason (a fault in the file,
/// or in a file it names) and was told to stay up (`--on-config-fault needs-service`, as the
/// unit runs it): exiting would leave a dead button and a blank screen, and a restart cannot
/// fix the file. So it stays up, does one thing — say so — and never registers or calls:
///
/// - the screen shows "this tablet does not work now; call the centrale with another phone";
/// - the status LED winks twice a second (`IndicatorState.needsService`);
/// - the control socket answers `status` with every fault (key, line, file) and phase
///   `needsService`, and `screenshot`; every other command is refused with the first fault;
/// - systemd gets READY=1 with a STATUS= that says "needs service", and watchdog pings, so
///   `Restart=always` has nothing to restart.
///
/// The configuration is checked again every `recheckInterval`; once it passes (the technician
/// fixed the file, or a file it names appeared) the mode ends with `Outcome.recovered`, which
/// `beeldzorgd` turns into exit 75 so that systemd (`Restart=always`) starts the real daemon.
/// `systemctl restart beeldzorgd` after a fix does the same at once.
public enum NeedsServiceMode {
    /// Where the screen, light and socket are. From the configuration when it could be read
    /// (a fault in a file it names), else the image's defaults (the file itself is broken).
    public struct Settings: Sendable {
        public var screen: Configuration.Screen
        public var promptsDirectory: String
        public var language: String
        public var statusLED: String?
        public var controlSocket: String

        /// The LED the image's udev rule and unit prepare (`beeldzorg:status`).
        public static let defaultStatusLED = "beeldzorg:status"

        public init(configuration: Configuration?) {
            if let configuration {
                screen = configuration.screen
                promptsDirectory = configuration.promptsDirectory
                language = configuration.language
                statusLED = configuration.statusLED
                controlSocket = configuration.controlSocket
            } else {
                screen = Configuration.Screen()
                promptsDirectory = "/usr/share/beeldzorg/prompts"
                language = "nl"
                statusLED = Self.defaultStatusLED
                controlSocket = ControlProtocol.defaultSocketPath
            }
        }
    }

    /// The phase `status` reports (`StatusReport.Call.phase`).
    public static let phase = "needsService"

    public static let recheckInterval: Duration = .seconds(2)

    public enum Outcome: Sendable { case stopped, recovered }

    /// Runs until SIGTERM or SIGINT (`.stopped`), or until `usable()` says the configuration
    /// passes now (`.recovered`). `faults` are the technician's sentences (key, line, file).
    public static func run(faults: [String], settings: Settings, logger: Logger,
                           usable: @escaping @Sendable () -> Bool) async throws -> Outcome {
        let startedAt = Date()
        let notifier = SystemdNotifier()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

        let screen = ScreenService.make(settings: settings.screen, promptsDirectory: settings.promptsDirectory,
                                        language: settings.language, logger: Logger(label: "beeldzorgd.screen"))
        screen.showNeedsService()
        let light = settings.statusLED.map { SysfsLED(name: $0, logger: logger) }
        light?.show(.needsService)

        let refusal = "beeldzorgd needs service: the configuration cannot be used (\(faults.first ?? "unknown fault")); "
            + "fix it, then `systemctl restart beeldzorgd` (`beeldzorgctl status` lists every fault)"
        let report: @Sendable () -> StatusReport = {
            StatusReport(
                daemon: .init(version: BeeldzorgDaemon.version, pid: getpid(), startedAt: startedAt,
                              uptimeSeconds: Int(Date().timeIntervalSince(startedAt)), demo: false),
                call: .init(phase: phase, peer: nil, callbackPending: false),
                registration: [], network: false, devices: [], lastCall: nil,
                store: .init(healthy: false, path: "", detail: "not opened: the daemon needs service"),
                media: nil,
                faults: ["needs service: the daemon did not start; the button calls nobody"] + faults.map { "configuration: \($0)" })
        }

        var services: [any Service] = [screen]
        do {
            let control = try await ControlServer.bind(path: settings.controlSocket, group: group,
                                                       logger: Logger(label: "beeldzorgd.control")) { request, _ in
                switch request.cmd {
                case .status:
                    return (try? .success(report())) ?? .failure(ControlError(.internal, "status could not be encoded"))
                case .screenshot:
                    return screen.screenshot(phase: phase)
                case .press, .demoCallIn, .calls, .contacts, .testCamera, .testMicrophone, .testSpeaker,
                     .provisionStatus, .provisionSync, .testButton, .volume:
                    return .failure(ControlError(.unavailable, refusal))
                }
            }
            services.append(control)
        } catch {
            logger.critical("control socket unavailable", metadata: ["path": "\(settings.controlSocket)", "error": "\(error)"])
        }
        services.append(NeedsServiceWatchdog(notifier: notifier))
        let watch = ConfigurationWatch(usable: usable, logger: logger)

        let serviceGroup = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) }
                + [.init(service: watch, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        logger.critical("needs service: not starting; the screen and light say so until the configuration is fixed",
                        metadata: ["faults": "\(faults.count)"])
        // STATUS= is readable by every local user: no paths, only where to look.
        notifier.ready(status: "needs service: configuration fault (beeldzorgctl status)")
        do {
            try await serviceGroup.run()
        } catch {
            logger.error("service failed", metadata: ["error": "\(error)"])
        }
        notifier.stopping()
        try? await group.shutdownGracefully()
        logger.info("stopped")
        return watch.recovered.load(ordering: .acquiring) ? .recovered : .stopped
    }
}

/// Checks the configuration again every `NeedsServiceMode.recheckInterval`; returns (ending
/// the group) once it passes. On SIGTERM it waits no longer.
final class ConfigurationWatch: Service, Sendable {
    let usable: @Sendable () -> Bool
    let logger: Logger
    let recovered = Atomic<Bool>(false)

    init(usable: @escaping @Sendable () -> Bool, logger: Logger) {
        self.usable = usable
        self.logger = logger
    }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: NeedsServiceMode.recheckInterval)
                if self.usable() {
                    self.logger.notice("the configuration passes its checks now; ending needs-service so the daemon starts")
                    self.recovered.store(true, ordering: .releasing)
                    return
                }
            }
        }
    }
}

/// Watchdog pings while nothing else runs: without them systemd would kill and restart the
/// needs-service daemon every `WatchdogSec`, the very loop this mode exists to avoid.
struct NeedsServiceWatchdog: Service {
    let notifier: SystemdNotifier

    func run() async throws {
        guard let interval = notifier.watchdogInterval else {
            try? await gracefulShutdown()
            return
        }
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                notifier.watchdog()
                try await Task.sleep(for: interval)
            }
        }
    }
}
