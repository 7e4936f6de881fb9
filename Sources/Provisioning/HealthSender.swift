internal import AsyncHTTPClient
public import Foundation
internal import NIOCore
internal import NIOHTTP1

/// Sends one health report: `POST {url}` with the JSON document, over the same HTTPS rules,
/// pinned CA and bearer token as provisioning (``ServerConnection``), `Idempotency-Key:
/// <reportID>` so a report sent again after a lost answer is recognised.
public final class HealthSender: Sendable {
    /// What became of one report.
    public enum Outcome: Sendable, Equatable, CustomStringConvertible {
        /// 2xx: the server has it.
        case delivered
        /// Network, TLS, timeout, 5xx, 408, 429: worth sending again later.
        case failed(String)
        /// Any other 4xx: the server will not take this report.
        case rejected(Int)

        public var description: String {
            switch self {
            case .delivered: "delivered"
            case .failed(let reason): "failed: \(reason)"
            case .rejected(let status): "rejected with HTTP \(status)"
            }
        }
    }

    public let url: String
    private let bearerToken: String
    private let timeout: Duration
    private let client: HTTPClient

    /// - Parameter url: `https://…`; checked here.
    public init(url: String, bearerToken: String, pinnedCAFile: String?, timeout: Duration = .seconds(15)) throws {
        _ = try ServerConnection.checkedHTTPSURL(url, what: "health URL")
        self.url = url
        self.bearerToken = bearerToken
        self.timeout = timeout
        self.client = try ServerConnection.makeClient(pinnedCAFile: pinnedCAFile)
    }

    /// The health URL that belongs to an upload base (`…/tablets/tablet-0042` → `…/health`).
    public static func url(uploadBase: String) -> String {
        var base = uploadBase
        while base.hasSuffix("/") { base.removeLast() }
        return base + "/health"
    }

    public func send(_ body: Data, reportID: String) async -> Outcome {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(bearerToken)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: reportID)
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let status = try await ServerConnection.withTimeout(timeout) { [client, request, timeout] in
                let response = try await client.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
                _ = try? await response.body.collect(upTo: 64 * 1024)
                return Int(response.status.code)
            }
            switch status {
            case 200..<300: return .delivered
            case 408, 429: return .failed("HTTP \(status)")
            case 400..<500: return .rejected(status)
            default: return .failed("HTTP \(status)")
            }
        } catch is ServerConnection.TimedOut {
            return .failed("no answer within \(timeout)")
        } catch {
            return .failed(ServerConnection.describe(error))
        }
    }

    public func shutdown() async throws {
        try await client.shutdown()
    }
}
