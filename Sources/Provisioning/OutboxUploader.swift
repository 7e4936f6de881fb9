internal import AsyncHTTPClient
public import Foundation
public import Logging
internal import NIOCore
internal import NIOHTTP1
public import Store
internal import Synchronization

/// Where and how the outbox is delivered.
///
/// Endpoints: `POST {baseURL}/calls` for call-log records and `POST {baseURL}/callback-requests`
/// for callback requests. The body is the record's JSON snapshot, which carries its `id`;
/// the same id is sent as `Idempotency-Key`, so a retry after a lost answer is recognised by
/// the server. Any 2xx means "stored" (a server that already had the id answers 2xx too).
public struct UploadTarget: Sendable {
    /// `https://…`, without a trailing slash.
    public var baseURL: String
    /// Sent as `Authorization: Bearer …`; never logged.
    public var bearerToken: String
    /// PEM with the only CA(s) trusted; `nil` uses the system's roots.
    public var pinnedCAFile: String?
    /// One request, connect to last byte of the answer.
    public var timeout: Duration

    public init(baseURL: String, bearerToken: String, pinnedCAFile: String?, timeout: Duration = .seconds(20)) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.bearerToken = bearerToken
        self.pinnedCAFile = pinnedCAFile
        self.timeout = timeout
    }

    /// The upload base that belongs to a provisioning document URL: the URL without its last
    /// path segment (`…/tablets/tablet-0042/config` → `…/tablets/tablet-0042`).
    public static func baseURL(derivedFrom provisioningURL: String) -> String {
        guard var components = URLComponents(string: provisioningURL) else { return provisioningURL }
        components.query = nil
        components.fragment = nil
        var path = components.path
        while path.hasSuffix("/") { path.removeLast() }
        if let slash = path.lastIndex(of: "/") { path = String(path[..<slash]) }
        components.path = path
        return components.string ?? provisioningURL
    }

    /// The endpoint for one kind of outbox item.
    public func url(for kind: OutboxKind) -> String {
        switch kind {
        case .callRecord: baseURL + "/calls"
        case .callbackRequest: baseURL + "/callback-requests"
        }
    }
}

/// When a failed item is tried again: exponential from `initial`, doubling per attempt, capped
/// at `maximum`, each delay drawn from [½·d, d] so that many tablets coming back after an
/// outage of the server do not all knock at the same second.
public struct UploadBackoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration = .seconds(5), maximum: Duration = .seconds(15 * 60)) {
        precondition(initial > .zero && maximum >= initial, "backoff bounds must be positive and ordered")
        self.initial = initial
        self.maximum = maximum
    }

    public static let `default` = UploadBackoff()

    /// The upper bound of the delay after the `attempts`-th failed attempt (1-based).
    public func ceiling(afterAttempts attempts: Int) -> Duration {
        var delay = initial
        for _ in 1..<max(1, min(attempts, 40)) {
            delay *= 2
            if delay >= maximum { return maximum }
        }
        return min(delay, maximum)
    }

    /// A jittered delay after the `attempts`-th failed attempt.
    public func delay<G: RandomNumberGenerator>(afterAttempts attempts: Int, using generator: inout G) -> Duration {
        let ceiling = ceiling(afterAttempts: attempts)
        return ceiling * Double.random(in: 0.5...1.0, using: &generator)
    }
}

/// What one pass over the due items did.
public struct UploadPass: Sendable, Equatable, CustomStringConvertible {
    /// Acknowledged with a 2xx and removed from the outbox.
    public var delivered: [String] = []
    /// Network, TLS, timeout, 5xx, 408, 429: tried again after the backoff.
    public var failed: [String] = []
    /// Refused by the server (4xx other than 408/429): kept, tried again after the maximum
    /// backoff, and logged as an error for the organisation to look at.
    public var rejected: [String] = []
    /// The last failure's reason, if any.
    public var lastError: String?

    public init() {}

    public var description: String {
        var text = "\(delivered.count) delivered, \(failed.count) failed, \(rejected.count) rejected"
        if let lastError { text += " (\(lastError))" }
        return text
    }
}

/// Delivers the store's upload outbox (call records and callback requests) to the
/// organisation's server over HTTPS: the pinned CA, the bearer token, `Idempotency-Key: <id>`.
/// An item leaves the outbox only after a 2xx; everything else is counted and backed off in
/// the store, so retries survive a restart of the daemon or a power cut.
///
/// Run ``run(every:)`` from a service (once per instance); ``kick()`` wakes it at once (a new
/// record was written). ``uploadDue()`` is one pass, for tests and `provision sync`.
public final class OutboxUploader: Sendable {
    public let target: UploadTarget
    public let backoff: UploadBackoff
    private let store: BeeldzorgStore
    private let client: HTTPClient
    private let logger: Logger
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let lastPassResult = Mutex<(Date, UploadPass)?>(nil)

    public init(target: UploadTarget, store: BeeldzorgStore, logger: Logger, backoff: UploadBackoff = .default) throws {
        _ = try ServerConnection.checkedHTTPSURL(target.baseURL, what: "upload URL")
        self.target = target
        self.backoff = backoff
        self.store = store
        self.logger = logger
        self.client = try ServerConnection.makeClient(pinnedCAFile: target.pinnedCAFile)
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Asks the running loop to look at the outbox now (thread-safe, never blocks).
    public func kick() {
        wake.yield()
    }

    /// When the last pass ran and what it did, for status displays.
    public var lastPass: (at: Date, result: UploadPass)? {
        lastPassResult.withLock { $0.map { (at: $0.0, result: $0.1) } }
    }

    /// Uploads every due item (in batches), then waits for a kick, the next item falling due
    /// or `interval`, whichever comes first; until the task is cancelled.
    public func run(every interval: Duration = .seconds(60)) async {
        let timer = Mutex<Task<Void, Never>?>(nil)
        defer { timer.withLock { $0?.cancel() } }
        wake.yield()
        for await _ in wakeups {
            if Task.isCancelled { break }
            _ = await uploadDue()
            var delay = interval
            if let next = try? store.outboxItems().map(\.nextAttemptAt).min() {
                let untilDue = Duration.seconds(max(0, next.timeIntervalSinceNow)) + .milliseconds(10)
                delay = min(delay, untilDue)
            }
            let wake = self.wake
            let sleep = delay
            timer.withLock {
                $0?.cancel()
                $0 = Task {
                    try? await Task.sleep(for: sleep)
                    if !Task.isCancelled { wake.yield() }
                }
            }
        }
    }

    /// Sends every item due now, in batches of 20. Never throws; failures are recorded per item.
    public func uploadDue() async -> UploadPass {
        var pass = UploadPass()
        var seen: Set<String> = []
        let batchSize = 20
        while !Task.isCancelled {
            let items: [OutboxItem]
            do {
                items = try store.dueOutboxItems(at: Date(), limit: batchSize).filter { !seen.contains($0.id) }
            } catch {
                logger.error("cannot read the upload outbox", metadata: ["error": "\(error)"])
                pass.lastError = "cannot read the outbox: \(error)"
                break
            }
            if items.isEmpty { break }
            for item in items {
                seen.insert(item.id)
                await upload(item, pass: &pass)
            }
            if items.count < batchSize { break }
        }
        if !(pass.delivered.isEmpty && pass.failed.isEmpty && pass.rejected.isEmpty) {
            logger.info("outbox pass", metadata: ["result": "\(pass)"])
        }
        lastPassResult.withLock { $0 = (Date(), pass) }
        return pass
    }

    public func shutdown() async throws {
        wake.finish()
        try await client.shutdown()
    }

    private enum Answer: Sendable {
        case status(Int)
        case failure(String)
    }

    private func upload(_ item: OutboxItem, pass: inout UploadPass) async {
        var request = HTTPClientRequest(url: target.url(for: item.kind))
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(target.bearerToken)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: item.id)
        request.body = .bytes(ByteBuffer(bytes: item.payload))

        let answer: Answer
        do {
            answer = try await ServerConnection.withTimeout(target.timeout) { [client, request, target] in
                let response = try await client.execute(
                    request, timeout: .nanoseconds(target.timeout.nanoseconds))
                // Read (a bounded amount of) the answer so the connection can be reused.
                _ = try? await response.body.collect(upTo: 64 * 1024)
                return .status(Int(response.status.code))
            }
        } catch is ServerConnection.TimedOut {
            answer = .failure("no answer within \(target.timeout)")
        } catch {
            answer = .failure(ServerConnection.describe(error))
        }

        let metadata: Logger.Metadata = ["id": "\(item.id)", "kind": "\(item.kind.rawValue)", "attempt": "\(item.attempts + 1)"]
        switch answer {
        case .status(let code) where (200..<300).contains(code):
            do {
                try store.outboxDelivered(id: item.id)
                pass.delivered.append(item.id)
                logger.debug("uploaded", metadata: metadata)
            } catch {
                // The server has it; when we send it again it deduplicates by id.
                logger.error("uploaded but cannot remove from the outbox", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            }
        case .status(let code) where (400..<500).contains(code) && code != 408 && code != 429:
            // Our request is wrong in the server's eyes (token, format): retrying soon will
            // not help, dropping would lose a record. Keep it; try rarely; say so loudly.
            pass.rejected.append(item.id)
            pass.lastError = "HTTP \(code)"
            logger.error("upload rejected by the server; kept, retried after the maximum backoff",
                         metadata: metadata.merging(["status": "\(code)"]) { $1 })
            record(failureOf: item, delay: backoff.maximum)
        case .status(let code):
            pass.failed.append(item.id)
            pass.lastError = "HTTP \(code)"
            logger.warning("upload failed", metadata: metadata.merging(["status": "\(code)"]) { $1 })
            record(failureOf: item, delay: nil)
        case .failure(let reason):
            pass.failed.append(item.id)
            pass.lastError = reason
            logger.warning("upload failed", metadata: metadata.merging(["reason": "\(reason)"]) { $1 })
            record(failureOf: item, delay: nil)
        }
    }

    private func record(failureOf item: OutboxItem, delay: Duration?) {
        var generator = SystemRandomNumberGenerator()
        let wait = delay ?? backoff.delay(afterAttempts: item.attempts + 1, using: &generator)
        let seconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
        do {
            try store.outboxAttemptFailed(id: item.id, nextAttemptAt: Date().addingTimeInterval(seconds))
        } catch {
            logger.error("cannot record a failed upload", metadata: ["id": "\(item.id)", "error": "\(error)"])
        }
    }
}
