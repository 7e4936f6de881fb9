internal import AsyncHTTPClient
public import Foundation
internal import NIOCore
internal import NIOSSL

/// The one way this module talks to the organisation's server: HTTPS only, TLS 1.2 or
/// newer, trusting only the pinned CA, no redirects, HTTP/1.1. ``Provisioner`` and
/// ``OutboxUploader`` both build their client here so their trust rules cannot drift apart.
enum ServerConnection {
    /// Checks that `text` is an `https://host/…` URL.
    static func checkedHTTPSURL(_ text: String, what: String) throws -> URL {
        guard let url = URL(string: text), url.scheme?.lowercased() == "https", url.host != nil else {
            throw ProvisioningRejection("\(what) must be https://host/…: \(text)")
        }
        return url
    }

    /// - Parameter pinnedCAFile: PEM with the only CA(s) trusted; `nil` uses the system's roots.
    static func makeClient(pinnedCAFile: String?) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        // When we give up on a request, do not wait the default 5 s for the server's
        // close_notify: a stalled server never sends it.
        tls.shutdownTimeout = .milliseconds(200)
        if let caFile = pinnedCAFile {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
        }
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls, redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: .seconds(10)))
        configuration.httpVersion = .http1Only
        // A refused certificate will not get better by retrying until the deadline; report it.
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// One line about a failed exchange, for logs and status (never contains the token).
    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOSSLError {
            return "TLS: \(error)"
        }
        if let error = error as? BoringSSLError {
            return "TLS: \(error)"
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .remoteConnectionClosed: return "connection closed before the whole answer arrived"
            case .readTimeout: return "read timeout"
            case .connectTimeout: return "connect timeout"
            case .deadlineExceeded: return "deadline exceeded"
            default: return "\(error)"
            }
        }
        return "\(error)"
    }

    struct TimedOut: Error {}

    /// Runs `body`, cancelling it when `limit` passes first. AHC's own deadline covers the
    /// response head; this also bounds a server that trickles the body.
    static func withTimeout<T: Sendable>(
        _ limit: Duration, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw TimedOut() }
            return value
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
