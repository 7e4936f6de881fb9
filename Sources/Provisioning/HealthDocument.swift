public import Foundation

/// The health report a tablet sends to its organisation (`POST {health_url}`), defined by
/// `docs/health.schema.json` (schemaVersion 1). Add optional fields freely; renaming or
/// removing one is a new schema version.
///
/// Nothing personal goes in: no client or contact name, no SIP URI or number of anyone the
/// tablet called or who called it — the last call is its direction, outcome and times only.
/// The edge proxies and device paths are the organisation's own configuration.
public struct HealthDocument: Codable, Sendable, Equatable {
    public static let currentSchemaVersion = 1

    public struct Software: Codable, Sendable, Equatable {
        /// beeldzorgd's version.
        public var version: String
        /// The image's `IMAGE_VERSION` from os-release; null when the system does not say.
        public var imageVersion: String?

        public init(version: String, imageVersion: String?) {
            self.version = version
            self.imageVersion = imageVersion
        }

        // Written as null, not left out: "the image did not say" is information.
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(version, forKey: .version)
            try container.encode(imageVersion, forKey: .imageVersion)
        }
    }

    public struct Registration: Codable, Sendable, Equatable {
        /// The edge proxy (from the configuration).
        public var proxy: String
        /// registered, registering, failed
        public var state: String
        public var detail: String?
        /// How long this flow has been without a registration, when it is.
        public var notRegisteredSeconds: Int?

        public init(proxy: String, state: String, detail: String?, notRegisteredSeconds: Int?) {
            self.proxy = proxy
            self.state = state
            self.detail = detail
            self.notRegisteredSeconds = notRegisteredSeconds
        }
    }

    public struct Network: Codable, Sendable, Equatable {
        /// The daemon's view: false while the SIP layer has no usable network.
        public var up: Bool

        public init(up: Bool) { self.up = up }
    }

    public struct Call: Codable, Sendable, Equatable {
        /// CallFlow's phase now (idle, inCall, …).
        public var phase: String
        /// A callback request is waiting for the centrale to call back.
        public var callbackPending: Bool

        public init(phase: String, callbackPending: Bool) {
            self.phase = phase
            self.callbackPending = callbackPending
        }
    }

    /// The last call's outcome and times; never who it was with.
    public struct LastCall: Codable, Sendable, Equatable {
        public var direction: String
        public var outcome: String
        public var startedAt: Date
        public var durationSeconds: Int?

        public init(direction: String, outcome: String, startedAt: Date, durationSeconds: Int?) {
            self.direction = direction
            self.outcome = outcome
            self.startedAt = startedAt
            self.durationSeconds = durationSeconds
        }
    }

    public struct Device: Codable, Sendable, Equatable {
        /// button, camera, microphone, speaker, screen, led
        public var name: String
        /// What is configured (a device path, a stand-in name); null when not configured.
        public var source: String?
        /// ok, missing, notConfigured
        public var state: String
        public var detail: String?

        public init(name: String, source: String?, state: String, detail: String?) {
            self.name = name
            self.source = source
            self.state = state
            self.detail = detail
        }
    }

    public struct Storage: Codable, Sendable, Equatable {
        /// The directory holding the database.
        public var path: String
        public var freeBytes: Int64?
        public var totalBytes: Int64?
        public var databaseHealthy: Bool

        public init(path: String, freeBytes: Int64?, totalBytes: Int64?, databaseHealthy: Bool) {
            self.path = path
            self.freeBytes = freeBytes
            self.totalBytes = totalBytes
            self.databaseHealthy = databaseHealthy
        }
    }

    public struct Memory: Codable, Sendable, Equatable {
        /// beeldzorgd's resident set size.
        public var residentBytes: Int64?

        public init(residentBytes: Int64?) { self.residentBytes = residentBytes }
    }

    public struct Outbox: Codable, Sendable, Equatable {
        /// Call records and callback requests not yet acknowledged by the server.
        public var pending: Int
        /// Of which callback requests.
        public var pendingCallbackRequests: Int
        public var oldestCreatedAt: Date?

        public init(pending: Int, pendingCallbackRequests: Int, oldestCreatedAt: Date?) {
            self.pending = pending
            self.pendingCallbackRequests = pendingCallbackRequests
            self.oldestCreatedAt = oldestCreatedAt
        }
    }

    public struct Update: Codable, Sendable, Equatable {
        /// notSupported until the tablet can update itself.
        public var state: String

        public init(state: String) { self.state = state }
    }

    public struct Fault: Codable, Sendable, Equatable {
        /// device, notRegistered, store, other
        public var code: String
        /// What it concerns: a device name, an edge proxy; absent for `store`.
        public var subject: String?
        /// A plain sentence for the organisation's staff.
        public var detail: String
        /// When it was first seen, if known.
        public var since: Date?

        public init(code: String, subject: String?, detail: String, since: Date?) {
            self.code = code
            self.subject = subject
            self.detail = detail
            self.since = since
        }

        /// The key the schedule compares reports by (``HealthSchedule/Observation/faults``).
        public var key: String { subject.map { code + ":" + $0 } ?? code }
    }

    public var schemaVersion: Int
    /// Unique per report; also sent as `Idempotency-Key`.
    public var reportID: String
    public var generatedAt: Date
    /// start, periodic, faultsChanged
    public var reason: String
    /// The tablet's RFC 5626 instance id (a random urn:uuid made once): identifies the tablet
    /// without naming anyone.
    public var instanceID: String?
    public var software: Software
    public var startedAt: Date
    public var uptimeSeconds: Int
    public var registration: [Registration]
    public var network: Network
    public var call: Call
    public var lastCall: LastCall?
    public var devices: [Device]
    public var storage: Storage
    public var memory: Memory
    public var outbox: Outbox
    public var update: Update
    /// Faults first-class: empty when all is well.
    public var faults: [Fault]

    public init(reportID: String, generatedAt: Date, reason: String, instanceID: String?, software: Software,
                startedAt: Date, uptimeSeconds: Int, registration: [Registration], network: Network, call: Call,
                lastCall: LastCall?, devices: [Device], storage: Storage, memory: Memory, outbox: Outbox,
                update: Update, faults: [Fault]) {
        self.schemaVersion = Self.currentSchemaVersion
        self.reportID = reportID
        self.generatedAt = generatedAt
        self.reason = reason
        self.instanceID = instanceID
        self.software = software
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.registration = registration
        self.network = network
        self.call = call
        self.lastCall = lastCall
        self.devices = devices
        self.storage = storage
        self.memory = memory
        self.outbox = outbox
        self.update = update
        self.faults = faults
    }

    /// The wire form: ISO 8601 dates (whole seconds, UTC), sorted keys.
    public func encoded() throws -> Data {
        try Self.encoder.encode(self)
    }

    public static func decode(_ data: Data) throws -> HealthDocument {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(HealthDocument.self, from: data)
    }

    private static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
