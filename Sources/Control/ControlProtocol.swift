public import Foundation

/// The control socket's wire format: one JSON object per line, each way.
///
/// A request is `{"v":1,"cmd":"status"}` (plus arguments); the answer is
/// `{"v":1,"ok":true,"result":{…}}` or `{"v":1,"ok":false,"error":{"code":"…","message":"…"}}`.
/// `v` lets an older beeldzorgctl and a newer daemon notice each other.
public enum ControlProtocol {
    public static let version = 1
    /// A request line longer than this is refused and the connection closed.
    public static let maximumRequestBytes = 16 * 1024
    /// A client that sends nothing for this long is disconnected.
    public static let clientIdleTimeout: Duration = .seconds(10)
    public static let defaultSocketPath = "/run/beeldzorg/control.sock"
}

/// What a client may ask the daemon.
public struct ControlRequest: Codable, Sendable, Equatable {
    public enum Command: String, Codable, Sendable, CaseIterable {
        /// Everything `beeldzorgctl status` shows.
        case status
        /// A button press as if from the hardware (`kind` short or long): the demo's and the
        /// technician's `test` path into the very same call flow.
        case press
        /// The demo centrale calls the tablet (only when the demo centrale runs).
        case demoCallIn = "demo-call-in"
        /// Recent call-log records from the daemon's store (`limit`, `since`): personal data,
        /// answered only to root, the daemon's own user and the technicians' group
        /// (SO_PEERCRED / SO_PEERGROUPS), so `tech` needs no access to the 0700 state directory.
        case calls
        /// The contact list from the daemon's store; personal data, as `calls`.
        case contacts
        /// Technician device tests run by the daemon, which owns the devices (refused during
        /// a call): grab camera frames, record the microphone (`seconds`), play a prompt.
        case testCamera = "test-camera"
        case testMicrophone = "test-mic"
        case testSpeaker = "test-speaker"
        /// The provisioning server: last fetch, ETag, contacts, upload outbox.
        case provisionStatus = "provision-status"
        /// Fetch the provisioning document and deliver the outbox now; answers the outcome.
        case provisionSync = "provision-sync"
        /// Hand the next press (within `seconds`) to the technician instead of the call flow;
        /// refused unless the tablet is idle.
        case testButton = "test-button"
        /// Exactly what is on the screen now, as a PNG (`ScreenshotResult`); the CLI writes
        /// the file, so the daemon never writes where a client names.
        case screenshot
        /// The playback and capture levels (`level`, `captureLevel` set them, in percent,
        /// held within the configured floor and ceiling); answers what the mixer reads.
        case volume
    }

    public var v: Int
    public var cmd: Command
    /// For `press`: "short" or "long".
    public var kind: String?
    /// For `demo-call-in`: which caller (a SIP URI), so an unknown caller can be tried too.
    public var from: String?
    public var limit: Int?
    /// For `calls`: only calls started at or after this.
    public var since: Date?
    /// For `test-mic` and `test-camera`: how long to record or grab.
    public var seconds: Double?
    /// For `test-camera`: also return one frame (I420, base64) so the CLI can save it.
    public var includeFrame: Bool?
    /// For `volume`: the playback and capture levels to set, percent.
    public var level: Int?
    public var captureLevel: Int?

    public init(cmd: Command, kind: String? = nil, from: String? = nil, limit: Int? = nil,
                seconds: Double? = nil, includeFrame: Bool? = nil, since: Date? = nil,
                level: Int? = nil, captureLevel: Int? = nil) {
        self.level = level
        self.captureLevel = captureLevel
        self.v = ControlProtocol.version
        self.cmd = cmd
        self.kind = kind
        self.from = from
        self.limit = limit
        self.seconds = seconds
        self.includeFrame = includeFrame
        self.since = since
    }
}

public struct ControlError: Codable, Sendable, Equatable, Error {
    public enum Code: String, Codable, Sendable {
        case malformed, unsupportedVersion = "unsupported-version", unknownCommand = "unknown-command"
        case badArgument = "bad-argument", unavailable, tooLarge = "too-large", `internal`
        /// The caller may use the socket but not this command (personal data, not a technician).
        case forbidden
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}

/// One answer line. `result` is command-specific JSON kept as raw bytes so that
/// beeldzorgctl can pass it through (`--json`) without knowing every field.
public struct ControlResponse: Sendable, Equatable {
    public var v: Int
    public var ok: Bool
    public var result: Data?
    public var error: ControlError?

    public static func success<T: Encodable>(_ value: T) throws -> ControlResponse {
        ControlResponse(v: ControlProtocol.version, ok: true, result: try ControlCoding.encoder.encode(value), error: nil)
    }

    public static func failure(_ error: ControlError) -> ControlResponse {
        ControlResponse(v: ControlProtocol.version, ok: false, result: nil, error: error)
    }

    /// The response as one line (without the newline).
    public func encoded() -> Data {
        var object: [String: Any] = ["v": v, "ok": ok]
        if let result, let json = try? JSONSerialization.jsonObject(with: result, options: [.fragmentsAllowed]) {
            object["result"] = json
        }
        if let error {
            object["error"] = ["code": error.code.rawValue, "message": error.message]
        }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{\"v\":1,\"ok\":false}".utf8)
    }

    public static func decode(_ line: Data) throws -> ControlResponse {
        guard let object = try JSONSerialization.jsonObject(with: line) as? [String: Any],
              let v = object["v"] as? Int, let ok = object["ok"] as? Bool
        else { throw ControlError(.malformed, "the daemon's answer is not a control response") }
        var response = ControlResponse(v: v, ok: ok, result: nil, error: nil)
        if let result = object["result"] {
            response.result = try JSONSerialization.data(withJSONObject: result, options: [.fragmentsAllowed, .sortedKeys])
        }
        if let error = object["error"] as? [String: Any] {
            let code = (error["code"] as? String).flatMap(ControlError.Code.init(rawValue:)) ?? .internal
            response.error = ControlError(code, error["message"] as? String ?? "")
        }
        return response
    }

    public func decodeResult<T: Decodable>(_ type: T.Type) throws -> T {
        guard let result else { throw ControlError(.malformed, "the answer has no result") }
        return try ControlCoding.decoder.decode(T.self, from: result)
    }
}

/// Shared JSON settings so daemon and CLI agree on dates and key order.
public enum ControlCoding {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    /// Parses one request line; every failure is a `ControlError` the server can send back.
    public static func decodeRequest(_ line: Data) -> Result<ControlRequest, ControlError> {
        guard line.count <= ControlProtocol.maximumRequestBytes else {
            return .failure(ControlError(.tooLarge, "request longer than \(ControlProtocol.maximumRequestBytes) bytes"))
        }
        guard let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any] else {
            return .failure(ControlError(.malformed, "not a JSON object"))
        }
        guard let version = object["v"] as? Int else {
            return .failure(ControlError(.malformed, "missing \"v\" (protocol version)"))
        }
        guard version == ControlProtocol.version else {
            return .failure(ControlError(.unsupportedVersion, "protocol version \(version) not supported; this daemon speaks \(ControlProtocol.version)"))
        }
        guard let command = object["cmd"] as? String else {
            return .failure(ControlError(.malformed, "missing \"cmd\""))
        }
        guard ControlRequest.Command(rawValue: command) != nil else {
            let known = ControlRequest.Command.allCases.map(\.rawValue).joined(separator: ", ")
            return .failure(ControlError(.unknownCommand, "unknown command '\(command)'; known: \(known)"))
        }
        do {
            return .success(try decoder.decode(ControlRequest.self, from: line))
        } catch {
            return .failure(ControlError(.badArgument, "arguments of '\(command)' have the wrong type"))
        }
    }
}
