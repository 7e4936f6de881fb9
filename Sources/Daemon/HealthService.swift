import BeeldzorgConfig
import Control
import Devices
import Foundation
import Logging
import Provisioning
import ServiceLifecycle
import Store

/// Health reports to the organisation's server: samples the same status `beeldzorgctl status`
/// shows every few seconds, lets ``HealthSchedule`` decide (a fault appears or clears, the
/// interval passes, the server is unreachable), and executes what it says: build a
/// ``HealthDocument``, keep the unsent queue in the store (setting `health.queue`), send one
/// report. Built only when `provisioning:` is configured (same server, token and pinned CA).
final class HealthService: Service, Sendable {
    static let queueSetting = "health.queue"

    private let configuration: Configuration
    private let store: BeeldzorgStore
    private let status: @Sendable () async -> StatusReport
    private let instanceID: String
    private let logger: Logger
    /// nil when the token or CA could not be read (logged once).
    private let sender: HealthSender?
    private let interval: Duration
    private let sampleEvery: Duration

    init(configuration: Configuration, provisioning: Configuration.Provisioning, store: BeeldzorgStore,
         instanceID: String, logger: Logger, status: @escaping @Sendable () async -> StatusReport) {
        self.configuration = configuration
        self.store = store
        self.status = status
        self.instanceID = instanceID
        self.logger = logger
        interval = .seconds(provisioning.healthIntervalSeconds)
        // Faults are noticed by sampling: at most 5 s late, or at the interval if shorter.
        sampleEvery = min(.seconds(5), interval)
        let url = provisioning.healthURL
            ?? HealthSender.url(uploadBase: provisioning.uploadURL ?? UploadTarget.baseURL(derivedFrom: provisioning.url))
        do {
            let token = try ProvisioningService.readToken(provisioning.tokenFile)
            sender = try HealthSender(url: url, bearerToken: token, pinnedCAFile: provisioning.caFile)
        } catch {
            sender = nil
            logger.error("health reports disabled", metadata: ["reason": "\(error)"])
        }
    }

    func run() async throws {
        guard let sender else {
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown { [self] in
            await loop(sender: sender)
        }
        try? await sender.shutdown()
    }

    /// Samples, decides and acts until cancelled.
    private func loop(sender: HealthSender) async {
        let clock = ContinuousClock()
        let origin = clock.now
        var schedule = HealthSchedule<HealthDocument>(settings: .init(interval: interval))
        var tracker = FaultTracker()
        _ = schedule.restored(loadQueue())
        while !Task.isCancelled {
            let report = await status()
            let faults = tracker.update(Self.faults(report, ledPresent: ledPresent()), at: Date())
            let observation = HealthSchedule<HealthDocument>.Observation(
                faults: Set(faults.map(\.key)),
                unregisteredProxies: Set(report.registration.filter { !["registered", "notConfigured"].contains($0.state) }.map(\.proxy)))
            var actions = schedule.observed(observation, at: clock.now - origin)
            while !actions.isEmpty {
                let action = actions.removeFirst()
                actions += await execute(action, schedule: &schedule, report: report, faults: faults,
                                         now: { clock.now - origin }, sender: sender)
            }
            try? await Task.sleep(for: sampleEvery)
        }
    }

    private func execute(
        _ action: HealthSchedule<HealthDocument>.Action, schedule: inout HealthSchedule<HealthDocument>,
        report: StatusReport, faults: [HealthDocument.Fault], now: () -> Duration, sender: HealthSender
    ) async -> [HealthSchedule<HealthDocument>.Action] {
        switch action {
        case .compose(let reason, let keys):
            let document = compose(reason: reason, report: report, faults: faults, keys: keys,
                                   unregisteredSince: schedule.unregisteredSince, now: now())
            if reason == .faultsChanged || reason == .start {
                logger.info("health report", metadata: [
                    "reason": "\(reason.rawValue)", "faults": "\(document.faults.map(\.key).sorted().joined(separator: ","))",
                ])
            }
            return schedule.enqueue(document, at: now())
        case .persist(let queue):
            saveQueue(queue)
            return []
        case .send(let document):
            let body: Data
            do {
                body = try document.encoded()
            } catch {
                logger.error("health report cannot be encoded; dropped", metadata: ["error": "\(error)"])
                return schedule.sendRejected(at: now())
            }
            let outcome = await sender.send(body, reportID: document.reportID)
            let metadata: Logger.Metadata = ["report": "\(document.reportID)", "reason": "\(document.reason)"]
            switch outcome {
            case .delivered:
                logger.debug("health report delivered", metadata: metadata)
                return schedule.sendSucceeded(at: now())
            case .failed(let reason):
                if !schedule.isBackingOff {
                    logger.warning("health report not delivered; queued", metadata: metadata.merging(["reason": "\(reason)"]) { $1 })
                }
                return schedule.sendFailed(at: now())
            case .rejected(let status):
                logger.error("health report refused by the server; dropped", metadata: metadata.merging(["status": "\(status)"]) { $1 })
                return schedule.sendRejected(at: now())
            }
        case .dropped(let count):
            logger.warning("health report queue full; oldest reports dropped", metadata: ["count": "\(count)"])
            return []
        }
    }

    // MARK: The document

    private func compose(reason: HealthSchedule<HealthDocument>.Reason, report: StatusReport, faults: [HealthDocument.Fault],
                         keys: Set<String>, unregisteredSince: [String: Duration], now: Duration) -> HealthDocument {
        let generatedAt = Date()
        var all = faults
        for registration in report.registration {
            guard let since = unregisteredSince[registration.proxy],
                  keys.contains(HealthSchedule<HealthDocument>.notRegisteredKey(registration.proxy)) else { continue }
            let seconds = Int((now - since).components.seconds)
            all.append(HealthDocument.Fault(
                code: "notRegistered", subject: registration.proxy,
                detail: "not registered with \(registration.proxy) for \(seconds / 60) minutes",
                since: generatedAt.addingTimeInterval(-Double(seconds))))
        }
        let storePath = store.path.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path }
            ?? URL(fileURLWithPath: configuration.databasePath).deletingLastPathComponent().path
        let space = Self.space(of: storePath)
        let outbox = (try? store.outboxItems()) ?? []
        return HealthDocument(
            reportID: RandomIdentifier.string(),
            generatedAt: generatedAt,
            reason: reason.rawValue,
            instanceID: instanceID,
            software: .init(version: report.daemon.version, imageVersion: Self.imageVersion()),
            startedAt: report.daemon.startedAt,
            uptimeSeconds: report.daemon.uptimeSeconds,
            registration: report.registration.map { registration in
                HealthDocument.Registration(
                    proxy: registration.proxy, state: registration.state, detail: registration.detail,
                    notRegisteredSeconds: unregisteredSince[registration.proxy].map { Int((now - $0).components.seconds) })
            },
            network: .init(up: report.network),
            call: .init(phase: report.call.phase, callbackPending: report.call.callbackPending),
            // Outcome and times only: `peer` (a name or URI) never leaves the tablet.
            lastCall: report.lastCall.map {
                .init(direction: $0.direction, outcome: $0.outcome, startedAt: $0.startedAt, durationSeconds: $0.durationSeconds)
            },
            devices: devices(report, faults: faults),
            storage: .init(path: storePath, freeBytes: space.free, totalBytes: space.total, databaseHealthy: report.store.healthy),
            memory: .init(residentBytes: Self.residentBytes()),
            outbox: .init(pending: outbox.count,
                          pendingCallbackRequests: outbox.filter { $0.kind == .callbackRequest }.count,
                          oldestCreatedAt: outbox.map(\.createdAt).min()),
            update: .init(state: "notSupported"),
            faults: all
        )
    }

    private func devices(_ report: StatusReport, faults: [HealthDocument.Fault]) -> [HealthDocument.Device] {
        func state(_ name: String) -> (String, String?) {
            if let fault = faults.first(where: { $0.code == "device" && $0.subject == name }) { return ("missing", fault.detail) }
            return ("ok", nil)
        }
        var devices = report.devices.map { device in
            HealthDocument.Device(name: device.name, source: device.source, state: device.present ? "ok" : "missing",
                                  detail: device.detail)
        }
        let screen = state("screen")
        devices.append(.init(name: "screen", source: configuration.screen.device,
                             state: configuration.screen.device == "none" ? "notConfigured" : screen.0, detail: screen.1))
        if let led = configuration.statusLED {
            let light = state("led")
            devices.append(.init(name: "led", source: led, state: light.0, detail: light.1))
        } else {
            devices.append(.init(name: "led", source: nil, state: "notConfigured", detail: nil))
        }
        return devices
    }

    private func ledPresent() -> Bool? {
        configuration.statusLED.map { SysfsLED(name: $0).isPresent }
    }

    /// The faults of one status sample, by kind. Registration failures are left to the
    /// schedule's "not registered for 5 minutes": a flow that fails once and recovers is state,
    /// not yet a fault, and its detail changes wording from try to try.
    static func faults(_ report: StatusReport, ledPresent: Bool?) -> [HealthDocument.Fault] {
        var faults: [HealthDocument.Fault] = []
        var covered: Set<String> = []
        for device in report.devices where !device.present {
            let sentence = "\(device.name) not found at \(device.source)"
            covered.insert(sentence)
            faults.append(.init(code: "device", subject: device.name, detail: sentence, since: nil))
        }
        if ledPresent == false {
            faults.append(.init(code: "device", subject: "led", detail: "status LED not present", since: nil))
        }
        if !report.store.healthy {
            faults.append(.init(code: "store", subject: nil, detail: report.store.detail ?? "the database is not healthy", since: nil))
        }
        for sentence in report.faults where !covered.contains(sentence) {
            if sentence.hasPrefix("registration with ") || sentence.hasPrefix("store: ") { continue }
            if sentence.hasPrefix("screen: ") {
                faults.append(.init(code: "device", subject: "screen", detail: sentence, since: nil))
            } else {
                faults.append(.init(code: "other", subject: sentence, detail: sentence, since: nil))
            }
        }
        return faults
    }

    /// `IMAGE_VERSION` from os-release (systemd's field for the image's version); nil when
    /// there is none.
    static func imageVersion(osRelease: String = "/etc/os-release") -> String? {
        guard let text = try? String(contentsOfFile: osRelease, encoding: .utf8) else { return nil }
        for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix("IMAGE_VERSION=") {
            var value = line.dropFirst("IMAGE_VERSION=".count)
            if value.count >= 2, let first = value.first, first == value.last, first == "\"" || first == "'" {
                value = value.dropFirst().dropLast()
            }
            return value.isEmpty ? nil : String(value)
        }
        return nil
    }

    static func residentBytes() -> Int64? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kilobytes = Int64(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return kilobytes * 1024
    }

    static func space(of path: String) -> (free: Int64?, total: Int64?) {
        guard let attributes = try? FileManager.default.attributesOfFileSystem(forPath: path) else { return (nil, nil) }
        return ((attributes[.systemFreeSize] as? NSNumber)?.int64Value, (attributes[.systemSize] as? NSNumber)?.int64Value)
    }

    // MARK: The queue in the store

    private func loadQueue() -> [HealthDocument] {
        guard let text = try? store.setting(Self.queueSetting), !text.isEmpty else { return [] }
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return try decoder.decode([HealthDocument].self, from: Data(text.utf8))
        } catch {
            logger.warning("stored health reports unreadable; starting with none", metadata: ["error": "\(error)"])
            return []
        }
    }

    private func saveQueue(_ queue: [HealthDocument]) {
        do {
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            let text = queue.isEmpty ? nil : String(decoding: try encoder.encode(queue), as: UTF8.self)
            try store.setSetting(Self.queueSetting, to: text)
        } catch {
            // The queue stays in memory; only a restart would lose it.
            logger.error("health report queue not stored", metadata: ["error": "\(error)"])
        }
    }
}

/// Remembers when each fault was first seen, so a report says since when.
private struct FaultTracker {
    private var firstSeen: [String: Date] = [:]

    mutating func update(_ faults: [HealthDocument.Fault], at now: Date) -> [HealthDocument.Fault] {
        let keys = Set(faults.map(\.key))
        firstSeen = firstSeen.filter { keys.contains($0.key) }
        return faults.map { fault in
            var fault = fault
            if firstSeen[fault.key] == nil { firstSeen[fault.key] = now }
            fault.since = firstSeen[fault.key]
            return fault
        }
    }
}
