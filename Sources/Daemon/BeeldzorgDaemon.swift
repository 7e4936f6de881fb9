public import BeeldzorgConfig
import CallFlow
import Control
import Foundation
public import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Store

/// Assembles the daemon from its configuration and runs it until SIGTERM or SIGINT.
///
/// Start-up order matters for the client: configuration (already validated), then the store
/// (a broken one is moved aside and replaced, never fatal), then SIP and the control socket,
/// then `READY=1`. The network is not waited for: the button must work the moment the
/// tablet is on, and CallFlow copes with "no network" itself.
public enum BeeldzorgDaemon {
    public static let version = "0.1.0"

    public static func run(configuration: Configuration, console: Bool, logger: Logger) async throws {
        let startedAt = Date()
        let notifier = SystemdNotifier()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let store = BeeldzorgStore.openOrFallBackToMemory(
            path: configuration.databasePath,
            options: StoreOptions(logger: Logger(label: "beeldzorgd.store"))
        )
        let display = ScreenService.make(configuration: configuration, store: store, logger: Logger(label: "beeldzorgd.screen"))
        let screen = ConsoleScreen(enabled: console, display: display)
        if let fault = store.openFault {
            logger.error("store fault at start", metadata: ["fault": "\(fault)"])
        }
        let callLog = CallLogWriter(store: store, logger: Logger(label: "beeldzorgd.calllog"))
        if configuration.demoCentrale {
            seedDemoContacts(store, logger: logger)
        }
        let provisioning = configuration.provisioning.map {
            ProvisioningService(configuration: $0, store: store, logger: Logger(label: "beeldzorgd.provisioning"))
        }
        if let provisioning { callLog.onQueuedForUpload { provisioning.kick() } }
        let devices = DeviceSet(configuration: configuration, logger: Logger(label: "beeldzorgd.devices"), screen: display)
        let feedback = TabletFeedback(
            devices: devices, screen: screen, promptsDirectory: configuration.promptsDirectory,
            language: configuration.language, statusLED: configuration.statusLED,
            logger: Logger(label: "beeldzorgd.feedback")
        )

        let signalling = try await SIPCallSignalling.start(
            configuration: configuration, group: group, devices: devices, callLog: callLog,
            screen: screen, instanceID: instanceID(store, logger: logger), logger: Logger(label: "beeldzorgd.sip")
        )

        let controller = CallController(
            configuration: flowConfiguration(configuration), callback: callbackSettings(configuration),
            signalling: signalling, feedback: feedback, callLog: callLog,
            notifier: notifier, logger: Logger(label: "beeldzorgd.call")
        )
        signalling.attach(controller.sink)
        let isDemo = configuration.demoCentrale
        let makeStatus: @Sendable (CallFlowStatus) async -> StatusReport = { flowStatus in
            var faults: [String] = []
            if let fault = store.openFault {
                faults.append("store: \(fault)")
            }
            faults += devices.faults()
            if let fault = feedback.fault { faults.append(fault) }
            if let fault = display.fault { faults.append(fault) }
            let registration = await signalling.registrationStatus()
            faults += StatusReport.registrationFaults(registration)
            return StatusReport(
                daemon: .init(version: version, pid: getpid(), startedAt: startedAt,
                              uptimeSeconds: Int(Date().timeIntervalSince(startedAt)), demo: isDemo),
                call: CallController.callSummary(flowStatus),
                registration: registration,
                network: flowStatus.networkUp,
                devices: devices.report(),
                lastCall: callLog.lastCall(),
                store: callLog.health,
                media: await signalling.mediaStatistics(),
                faults: faults
            )
        }
        await controller.setStatusProvider(makeStatus)

        let sink = controller.sink
        // Bound before READY=1, so `systemctl start … && beeldzorgctl status` finds it. A
        // socket that cannot be bound costs the technician, never the client's button.
        let volume = VolumeService(configuration: configuration.audio, store: store, logger: Logger(label: "beeldzorgd.volume"))
        var control: ControlServer?
        do {
            let technicians = technicianGID(configuration.controlGroup)
            let controlLogger = Logger(label: "beeldzorgd.control")
            control = try await ControlServer.bind(path: configuration.controlSocket, group: group,
                                                   technicianGroup: configuration.controlGroup,
                                                   logger: controlLogger) { request, peer in
                if request.cmd == .calls || request.cmd == .contacts {
                    // Personal data: only for technicians, whatever the socket's mode says.
                    guard let peer, peer.isTechnician(group: technicians) else {
                        controlLogger.notice("personal data refused", metadata: ["cmd": "\(request.cmd.rawValue)", "peer": "\(peer?.description ?? "?")"])
                        return .failure(ControlError(.forbidden, "\(request.cmd.rawValue) shows the client's personal data: only root and members of the \(configuration.controlGroup) group may see it"))
                    }
                    return Self.personalData(request, store: store)
                }
                if request.cmd == .screenshot {
                    // Not through the call loop: encoding the PNG takes a moment.
                    return display.screenshot(phase: await controller.status.phase.rawValue)
                }
                if request.cmd == .volume {
                    // Not through the call loop: the daemon owns the level in every phase.
                    return volume.control(request)
                }
                if request.cmd == .provisionStatus || request.cmd == .provisionSync {
                    // Not through the call loop: a sync may take the whole HTTP timeout.
                    return await provisioning?.control(request) ?? ProvisioningService.notConfigured(request, store: store)
                }
                return await withCheckedContinuation { continuation in
                    let result = sink.yield(.control(request, peer, { continuation.resume(returning: $0) }))
                    if case .terminated = result {
                        continuation.resume(returning: .failure(ControlError(.unavailable, "beeldzorgd is shutting down")))
                    }
                }
            }
        } catch {
            logger.critical("control socket unavailable; running without it", metadata: [
                "path": "\(configuration.controlSocket)", "error": "\(error)",
            ])
        }

        var services: [any Service] = [volume, ControllerService(controller: controller), signalling, display]
        if let control { services.append(control) }
        if let provisioning { services.append(provisioning) }
        if let section = configuration.provisioning {
            services.append(HealthService(
                configuration: configuration, provisioning: section, store: store,
                instanceID: instanceID(store, logger: logger), logger: Logger(label: "beeldzorgd.health"),
                status: { await makeStatus(await controller.status) }))
        }
        services.append(ButtonService(source: devices.makeButton(), sink: sink, logger: Logger(label: "beeldzorgd.button")))
        if let interval = notifier.watchdogInterval {
            services.append(WatchdogService(interval: interval, sink: sink))
        }

        // The network is assumed up until the SIP layer says otherwise; with no registrar
        // configured (the demo, a proxy-less test set-up) there is nothing to register with.
        sink.yield(.flow(.network(up: true)))
        if configuration.edgeProxies.isEmpty {
            sink.yield(.flow(.registration(up: true)))
        }

        let serviceGroup = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        logger.info("ready", metadata: [
            "version": "\(version)", "posts": "\(configuration.centrale.posts.count)",
            "policy": "\(configuration.centrale.policy.rawValue)", "transport": "\(configuration.transport.rawValue)",
        ])
        notifier.ready(status: "idle")
        screen.show(status: await controller.status)
        do {
            try await serviceGroup.run()
        } catch {
            logger.error("service failed", metadata: ["error": "\(error)"])
        }
        notifier.stopping()
        await signalling.shutdown()
        try? store.close()
        try? await group.shutdownGracefully()
        logger.info("stopped")
    }

    /// `calls` and `contacts` from the store the daemon owns (not through the call loop: a
    /// read must not hold up the button).
    static func personalData(_ request: ControlRequest, store: BeeldzorgStore) -> ControlResponse {
        do {
            switch request.cmd {
            case .calls:
                return try .success(store.recentCalls(limit: max(1, min(request.limit ?? 50, 500)), since: request.since))
            case .contacts:
                return try .success(store.contacts())
            case .status, .press, .demoCallIn, .testCamera, .testMicrophone, .testSpeaker, .provisionStatus,
                 .provisionSync, .testButton, .screenshot, .volume:
                return .failure(ControlError(.internal, "\(request.cmd.rawValue) is not personal data"))
            }
        } catch {
            return .failure(ControlError(.unavailable, "the store cannot be read: \(error)"))
        }
    }

    /// The tablet's RFC 5626 instance id: made once, kept in the store, the same across restarts.
    static func instanceID(_ store: BeeldzorgStore, logger: Logger) -> String {
        let key = "sip.instance-id"
        if let existing = try? store.setting(key), !existing.isEmpty { return existing }
        let fresh = "urn:uuid:\(RandomIdentifier.string())"
        do {
            try store.setSetting(key, to: fresh)
        } catch {
            logger.error("instance id could not be stored; a new one is used next start", metadata: ["error": "\(error)"])
        }
        return fresh
    }

    /// The demo's family contact, so `beeldzorgctl demo call-in` has someone to ring as.
    static func seedDemoContacts(_ store: BeeldzorgStore, logger: Logger) {
        do {
            if try store.contact(forURI: "sip:marieke@127.0.0.1") == nil {
                try store.upsertContact(Contact(
                    id: "demo-marieke", displayName: "Marieke", sipURI: "sip:marieke@127.0.0.1", role: .family, sortOrder: 1))
            }
        } catch {
            logger.error("demo contact could not be added", metadata: ["error": "\(error)"])
        }
    }

    /// Where callback requests go (`centrale.callback_uri`, `callback_fallback_uri`) and when
    /// one escalates (`callback_escalate_after_seconds`).
    static func callbackSettings(_ configuration: Configuration) -> CallbackSettings {
        let centrale = configuration.centrale
        return CallbackSettings(
            uri: centrale.callbackURI, fallbackURI: centrale.callbackFallbackURI,
            clientAOR: "sip:\(configuration.account.user)@\(configuration.account.domain)",
            delivery: CallbackDeliveryConfiguration(
                escalateAfter: centrale.callbackFallbackURI == nil ? nil : .seconds(centrale.callbackEscalateSeconds)))
    }

    static func flowConfiguration(_ configuration: Configuration) -> CallFlowConfiguration {
        let centrale = configuration.centrale
        let policy: RingPolicy = switch centrale.policy {
        case .ringAll: .ringAll
        case .hunt: .hunt(perPostTimeout: .seconds(centrale.perPostTimeoutSeconds))
        }
        return CallFlowConfiguration(
            posts: centrale.posts.map { CentralePost(id: $0.id, uri: $0.uri) },
            policy: policy,
            overallDeadline: .seconds(centrale.deadlineSeconds),
            reassuranceInterval: .seconds(centrale.reassuranceSeconds)
        )
    }
}
