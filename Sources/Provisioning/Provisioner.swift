internal import AsyncHTTPClient
public import Foundation
public import Logging
internal import NIOCore
internal import NIOHTTP1
internal import NIOSSL
public import Store

/// Where and how a tablet fetches its provisioning document.
public struct ProvisioningSource: Sendable {
    /// The document's https:// URL.
    public var url: String
    /// Set at install; sent as `Authorization: Bearer …` and never logged.
    public var bearerToken: String
    /// PEM file with the CA certificate(s) the server's certificate must chain to. Only
    /// these are trusted (the system's roots are not). `nil` uses the system's roots.
    public var pinnedCAFile: String?
    /// The whole request, connect to last body byte.
    public var timeout: Duration
    /// Larger documents are refused.
    public var maxDocumentBytes: Int

    public init(
        url: String, bearerToken: String, pinnedCAFile: String?, timeout: Duration = .seconds(20),
        maxDocumentBytes: Int = 1 << 20
    ) {
        self.url = url
        self.bearerToken = bearerToken
        self.pinnedCAFile = pinnedCAFile
        self.timeout = timeout
        self.maxDocumentBytes = maxDocumentBytes
    }
}

/// What one provisioning attempt did. In every case but `.applied` the store is unchanged.
public enum ProvisioningOutcome: Sendable, Equatable, CustomStringConvertible {
    /// A new document was applied in one transaction.
    case applied(etag: String?, contacts: Int, settings: Int)
    /// 304: the server's document is the one already applied.
    case notModified
    /// The server answered but the document was refused (malformed, oversized, violates
    /// the schema); the previous data is kept.
    case rejected(reason: String)
    /// No usable answer: network, TLS, timeout, truncated body, HTTP error status.
    case failed(reason: String)

    public var description: String {
        switch self {
        case .applied(_, let contacts, let settings):
            "applied: \(contacts) contacts, \(settings) settings"
        case .notModified: "not modified"
        case .rejected(let reason): "rejected: \(reason)"
        case .failed(let reason): "failed: \(reason)"
        }
    }
}

/// Fetches the tablet's provisioning document over HTTPS (pinned CA, bearer token,
/// If-None-Match with the last ETag) and applies it to the store all-or-nothing.
///
/// Call ``sync(now:)`` on demand, or ``runPeriodically(every:)`` from a service; call
/// ``shutdown()`` before dropping it.
public final class Provisioner: Sendable {
    public let source: ProvisioningSource
    private let store: BeeldzorgStore
    private let client: HTTPClient
    private let logger: Logger

    public init(source: ProvisioningSource, store: BeeldzorgStore, logger: Logger) throws {
        _ = try ServerConnection.checkedHTTPSURL(source.url, what: "provisioning URL")
        self.source = source
        self.store = store
        self.logger = logger
        self.client = try ServerConnection.makeClient(pinnedCAFile: source.pinnedCAFile)
    }

    /// One attempt: fetch, check, apply. Never throws; the outcome is also recorded in the
    /// store (``BeeldzorgStore/provisioningState()``) for status displays.
    public func sync(now: Date = Date()) async -> ProvisioningOutcome {
        let outcome = await attempt(now: now)
        switch outcome {
        case .applied, .notModified:
            logger.info("provisioning", metadata: ["outcome": "\(outcome)"])
        case .rejected, .failed:
            logger.warning("provisioning", metadata: ["outcome": "\(outcome)"])
        }
        do {
            try store.recordProvisioningAttempt(result: outcome.description, at: now)
        } catch {
            logger.error("cannot record provisioning attempt", metadata: ["error": "\(error)"])
        }
        return outcome
    }

    /// Syncs now and then every `interval` until the task is cancelled.
    public func runPeriodically(every interval: Duration) async {
        while !Task.isCancelled {
            _ = await sync()
            try? await Task.sleep(for: interval)
        }
    }

    public func shutdown() async throws {
        try await client.shutdown()
    }

    private func attempt(now: Date) async -> ProvisioningOutcome {
        let previousETag: String?
        do {
            previousETag = try store.provisioningState().etag
        } catch {
            return .failed(reason: "cannot read the store: \(error)")
        }
        var request = HTTPClientRequest(url: source.url)
        request.method = .GET
        request.headers.add(name: "Authorization", value: "Bearer \(source.bearerToken)")
        request.headers.add(name: "Accept", value: "application/json")
        if let previousETag { request.headers.add(name: "If-None-Match", value: previousETag) }

        let fetched: Fetched
        do {
            fetched = try await ServerConnection.withTimeout(source.timeout) { [client, source, request] in
                let response = try await client.execute(
                    request, timeout: .nanoseconds(Int64(source.timeout.nanoseconds)))
                let etag = response.headers.first(name: "ETag")
                switch response.status.code {
                case 200:
                    if let length = response.headers.first(name: "Content-Length").flatMap(Int.init),
                        length > source.maxDocumentBytes
                    {
                        return .tooLarge(length)
                    }
                    do {
                        var body = try await response.body.collect(upTo: source.maxDocumentBytes)
                        let data = Data(body.readBytes(length: body.readableBytes) ?? [])
                        return .document(data, etag: etag)
                    } catch is NIOTooManyBytesError {
                        return .tooLarge(nil)
                    }
                case 304:
                    return .notModified
                default:
                    return .status(Int(response.status.code), response.status.reasonPhrase)
                }
            }
        } catch is ServerConnection.TimedOut {
            return .failed(reason: "no complete answer within \(source.timeout)")
        } catch {
            return .failed(reason: ServerConnection.describe(error))
        }

        switch fetched {
        case .notModified:
            return .notModified
        case .status(let code, let phrase):
            return .failed(reason: "HTTP \(code) \(phrase)")
        case .tooLarge(let length):
            let size = length.map { "\($0) bytes" } ?? "more than \(source.maxDocumentBytes) bytes"
            return .rejected(reason: "document too large (\(size); limit \(source.maxDocumentBytes))")
        case .document(let data, let etag):
            let document: ProvisioningDocument
            do {
                document = try ProvisioningDocument.parse(data)
            } catch {
                return .rejected(reason: error.reason)
            }
            do {
                try store.applyProvisioning(
                    contacts: document.contacts, settings: document.settings, etag: etag, at: now)
            } catch {
                return .rejected(reason: "cannot apply: \(error)")
            }
            return .applied(etag: etag, contacts: document.contacts.count, settings: document.settings.count)
        }
    }

    private enum Fetched: Sendable {
        case document(Data, etag: String?)
        case notModified
        case status(Int, String)
        case tooLarge(Int?)
    }
}
