import CallFlow
import Foundation

/// Where the daemon sends callback requests, and the body of their SIP MESSAGE.
///
/// The body is `application/json` (UTF-8), one object; the centrale's software reads it and
/// deduplicates retries by `id` (a request is sent again after a restart, a timeout or an
/// escalation until a 2xx comes back):
///
/// ```json
/// {"type": "beeldzorg-callback-request", "version": 1,
///  "id": "3f0c…", "client": "sip:tablet-0042@zorg.example",
///  "pressedAt": "2026-12-05T19:30:12.345Z", "requestedAt": "2026-12-05T19:31:12.402Z",
///  "postsTried": ["post-1", "post-2"], "reason": "every post failed",
///  "attempt": 2, "escalated": false}
/// ```
///
/// `client` is the tablet's address of record (also the MESSAGE's From); `postsTried` are the
/// configured post ids in the order they were tried; `escalated` is true once the request went
/// to `callback_fallback_uri`. Nothing else about the client is in it.
struct CallbackSettings: Sendable {
    var uri: String?
    var fallbackURI: String?
    /// `sip:user@domain`.
    var clientAOR: String
    var delivery: CallbackDeliveryConfiguration

    static let contentType = "application/json"

    func uri(for target: CallbackTarget) -> String? {
        switch target {
        case .primary: uri
        case .fallback: fallbackURI ?? uri
        }
    }

    private struct Body: Encodable {
        var type = "beeldzorg-callback-request"
        var version = 1
        var id: String
        var client: String
        var pressedAt: String
        var requestedAt: String
        var postsTried: [String]
        var reason: String
        var attempt: Int
        var escalated: Bool
    }

    func body(_ request: CallbackRequestInfo, attempt: Int, target: CallbackTarget) -> [UInt8] {
        let format = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        let body = Body(id: request.id, client: clientAOR,
                        pressedAt: Date(timeIntervalSince1970: request.pressedAt.secondsSince1970).formatted(format),
                        requestedAt: Date(timeIntervalSince1970: request.createdAt.secondsSince1970).formatted(format),
                        postsTried: request.postsTried, reason: request.reason, attempt: attempt,
                        escalated: target == .fallback)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(body)) ?? Data("{}".utf8))
    }
}
