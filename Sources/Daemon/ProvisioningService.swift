import BeeldzorgConfig
import Control
import Foundation
import Logging
import Provisioning
import ServiceLifecycle
import Store
import Synchronization

/// The organisation's server, seen from the daemon: fetches the provisioning document every
/// `interval_minutes` (and on `provision-sync`), and delivers the upload outbox (woken by
/// ``kick()`` after each call). Built only when `provisioning:` is configured.
///
/// Control requests are answered here, not on CallController's loop: a sync can take the
/// whole HTTP timeout and must never hold up a press of the button.
final class ProvisioningService: Service, Sendable {
    private let configuration: Configuration.Provisioning
    private let store: BeeldzorgStore
    private let logger: Logger
    /// nil when the token or CA could not be read (`problem` says why).
    private let provisioner: Provisioner?
    private let uploader: OutboxUploader?
    private let problem: String?

    init(configuration: Configuration.Provisioning, store: BeeldzorgStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        var provisioner: Provisioner?
        var uploader: OutboxUploader?
        var problem: String?
        do {
            let token = try Self.readToken(configuration.tokenFile)
            provisioner = try Provisioner(
                source: ProvisioningSource(url: configuration.url, bearerToken: token, pinnedCAFile: configuration.caFile),
                store: store, logger: logger)
            let base = configuration.uploadURL ?? UploadTarget.baseURL(derivedFrom: configuration.url)
            uploader = try OutboxUploader(
                target: UploadTarget(baseURL: base, bearerToken: token, pinnedCAFile: configuration.caFile),
                store: store, logger: logger)
        } catch {
            // Without the server the tablet still calls the centrale from its config's posts.
            problem = "\(error)"
            logger.error("provisioning disabled", metadata: ["reason": "\(error)"])
        }
        self.provisioner = provisioner
        self.uploader = uploader
        self.problem = problem
    }

    struct TokenError: Error, CustomStringConvertible {
        var description: String
    }

    /// The token file's first line. Its content is never logged, only its path.
    static func readToken(_ path: String) throws -> String {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw TokenError(description: "cannot read the token file \(path)")
        }
        let token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard !token.isEmpty else { throw TokenError(description: "the token file \(path) is empty") }
        return token
    }

    /// A record was queued (a call ended, a callback request): send it now.
    func kick() {
        uploader?.kick()
    }

    func run() async throws {
        guard let provisioner, let uploader else {
            try? await gracefulShutdown()
            return
        }
        let interval = Duration.seconds(configuration.intervalMinutes * 60)
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await provisioner.runPeriodically(every: interval) }
                group.addTask { await uploader.run(every: .seconds(60)) }
            }
        }
        try? await provisioner.shutdown()
        try? await uploader.shutdown()
    }

    /// `provision-status` and `provision-sync`.
    func control(_ request: ControlRequest) async -> ControlResponse {
        do {
            switch request.cmd {
            case .provisionStatus:
                return try .success(try status())
            case .provisionSync:
                guard let provisioner, let uploader else {
                    return .failure(ControlError(.unavailable, "provisioning is configured but not running: \(problem ?? "?")"))
                }
                // The control socket drops a connection that is silent for 10 s, so answer
                // within 8 s; a slower sync goes on and `provision-status` shows its result.
                guard let (outcome, pass) = await Self.within(.seconds(8), {
                    (await provisioner.sync(), await uploader.uploadDue())
                }) else {
                    return .failure(ControlError(.unavailable, "the server has not answered within 8 s; the sync goes on (see provision status)"))
                }
                return try .success(ProvisioningSyncResult(outcome: outcome, upload: pass, status: try status()))
            default:
                return .failure(ControlError(.internal, "not a provisioning command: \(request.cmd.rawValue)"))
            }
        } catch let error as ControlError {
            return .failure(error)
        } catch {
            return .failure(ControlError(.internal, "\(error)"))
        }
    }

    /// `work`'s result if it finishes within `limit`, else nil; the work is not cancelled.
    static func within<T: Sendable>(_ limit: Duration, _ work: @escaping @Sendable () async -> T) async -> T? {
        let once = ResumeOnce()
        return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            @Sendable func finish(_ value: T?) {
                if once.claim() { continuation.resume(returning: value) }
            }
            Task { finish(await work()) }
            Task {
                try? await Task.sleep(for: limit)
                finish(nil)
            }
        }
    }

    private func status() throws -> ProvisioningStatus {
        var status = try ProvisioningStatus(store: store)
        status.url = configuration.url
        status.configured = provisioner != nil
        status.problem = problem
        if let last = uploader?.lastPass {
            status.lastUploadAt = last.at
            status.lastUploadResult = last.result.description
        }
        return status
    }

    /// The answer when `provisioning:` is not configured at all.
    static func notConfigured(_ request: ControlRequest, store: BeeldzorgStore) -> ControlResponse {
        switch request.cmd {
        case .provisionStatus:
            do {
                var status = try ProvisioningStatus(store: store)
                status.configured = false
                return try .success(status)
            } catch {
                return .failure(ControlError(.internal, "\(error)"))
            }
        default:
            return .failure(ControlError(.unavailable, "no provisioning server configured (provisioning: in beeldzorgd.yaml)"))
        }
    }
}

/// True for the first caller only: lets two racing tasks resume one continuation.
private final class ResumeOnce: Sendable {
    private let done = Mutex(false)
    func claim() -> Bool { done.withLock { done in defer { done = true }; return !done } }
}
