public import Foundation

/// What `beeldzorgctl status` shows and `status --json` prints. Its JSON shape is a contract
/// with field tools: add fields, never rename or remove them (Tests/ControlTests checks it).
/// Optional fields (a peer, the last call, media counters) are left out while they have no value.
public struct StatusReport: Codable, Sendable, Equatable {
    public struct Daemon: Codable, Sendable, Equatable {
        public var version: String
        public var pid: Int32
        public var startedAt: Date
        public var uptimeSeconds: Int
        public var demo: Bool
        public init(version: String, pid: Int32, startedAt: Date, uptimeSeconds: Int, demo: Bool) {
            self.version = version
            self.pid = pid
            self.startedAt = startedAt
            self.uptimeSeconds = uptimeSeconds
            self.demo = demo
        }
    }

    public struct Call: Codable, Sendable, Equatable {
        /// CallFlow's phase: idle, callingCentrale, ringingOut, incomingRinging, inCall, ending, unreachable, connectionLost, fault.
        public var phase: String
        public var peer: String?
        public var callbackPending: Bool
        /// What the client is told about a callback request: "trying" (the centrale has not
        /// acknowledged it yet), "promised" (it has); nil when there is none.
        public var callback: String?
        /// Since when: the oldest unacknowledged request, or the acknowledgement.
        public var callbackSince: Date?
        /// What the idle screen says about contacts' calls nobody took (newest first); nil
        /// from a daemon that predates it.
        public var missed: [MissedCall]?
        public init(phase: String, peer: String?, callbackPending: Bool, callback: String? = nil, callbackSince: Date? = nil,
                    missed: [MissedCall]? = nil) {
            self.phase = phase
            self.peer = peer
            self.callbackPending = callbackPending
            self.callback = callback
            self.callbackSince = callbackSince
            self.missed = missed
        }
    }

    /// A contact's call nobody took, not yet followed by a call with them.
    public struct MissedCall: Codable, Sendable, Equatable {
        public var name: String
        public var at: Date
        public init(name: String, at: Date) {
            self.name = name
            self.at = at
        }
    }

    public struct Registration: Codable, Sendable, Equatable {
        public var proxy: String
        /// registered, trying, failed, notConfigured
        public var state: String
        public var detail: String?
        public init(proxy: String, state: String, detail: String?) {
            self.proxy = proxy
            self.state = state
            self.detail = detail
        }
    }

    public struct Device: Codable, Sendable, Equatable {
        /// button, camera, microphone, speaker, led
        public var name: String
        public var source: String
        public var present: Bool
        public var detail: String?
        public init(name: String, source: String, present: Bool, detail: String?) {
            self.name = name
            self.source = source
            self.present = present
            self.detail = detail
        }
    }

    public struct LastCall: Codable, Sendable, Equatable {
        public var direction: String
        public var peer: String
        public var startedAt: Date
        public var outcome: String
        public var durationSeconds: Int?
        public init(direction: String, peer: String, startedAt: Date, outcome: String, durationSeconds: Int?) {
            self.direction = direction
            self.peer = peer
            self.startedAt = startedAt
            self.outcome = outcome
            self.durationSeconds = durationSeconds
        }
    }

    public struct Store: Codable, Sendable, Equatable {
        public var healthy: Bool
        public var path: String
        public var detail: String?
        public init(healthy: Bool, path: String, detail: String?) {
            self.healthy = healthy
            self.path = path
            self.detail = detail
        }
    }

    public struct Media: Codable, Sendable, Equatable {
        public var audioPacketsSent: Int
        public var audioPacketsReceived: Int
        public var videoFramesSent: Int
        public var videoFramesDecoded: Int
        public var authenticationFailures: Int
        /// The post holds the call (a sendonly/inactive re-INVITE): we receive but send nothing
        /// until it resumes. Optional so a report from an older daemon still decodes.
        public var heldByPost: Bool?
        public init(audioPacketsSent: Int, audioPacketsReceived: Int, videoFramesSent: Int,
                    videoFramesDecoded: Int, authenticationFailures: Int, heldByPost: Bool? = nil) {
            self.audioPacketsSent = audioPacketsSent
            self.audioPacketsReceived = audioPacketsReceived
            self.videoFramesSent = videoFramesSent
            self.videoFramesDecoded = videoFramesDecoded
            self.authenticationFailures = authenticationFailures
            self.heldByPost = heldByPost
        }
    }

    public var daemon: Daemon
    public var call: Call
    public var registration: [Registration]
    public var network: Bool
    public var devices: [Device]
    public var lastCall: LastCall?
    public var store: Store
    public var media: Media?
    /// Plain sentences for the technician; empty when all is well.
    public var faults: [String]

    /// The technician's sentences for flows that are not registered after a failure, so
    /// `status` (and its exit code) says so, not only the registration rows. A flow that is
    /// still trying for the first time is not a fault yet.
    public static func registrationFaults(_ registration: [Registration]) -> [String] {
        registration.filter { $0.state == "failed" }.map {
            "registration with \($0.proxy) failed\($0.detail.map { ": \($0)" } ?? ""); retrying"
        }
    }

    public init(daemon: Daemon, call: Call, registration: [Registration], network: Bool, devices: [Device],
                lastCall: LastCall?, store: Store, media: Media?, faults: [String]) {
        self.daemon = daemon
        self.call = call
        self.registration = registration
        self.network = network
        self.devices = devices
        self.lastCall = lastCall
        self.store = store
        self.media = media
        self.faults = faults
    }
}
