public import Foundation

/// Who a contact is to the client. Decides nothing about routing by itself; the daemon
/// reads it (e.g. a `centralePost` is never subject to the "only contacts" incoming filter).
public enum ContactRole: String, Codable, Sendable, CaseIterable {
    case centralePost
    case family
    case professional
}

/// One entry of the client's contact list, as provisioned.
public struct Contact: Codable, Sendable, Equatable, Identifiable {
    /// Stable id chosen by the provisioning server.
    public var id: String
    public var displayName: String
    /// The contact's SIP URI as provisioned (e.g. `sip:jan@example.org`). Unique per list
    /// after normalisation (see ``SIPAddressKey``).
    public var sipURI: String
    public var role: ContactRole
    /// Seconds of visible countdown before an incoming call from this contact is answered
    /// automatically; `nil` = auto-answer off (the default).
    public var autoAnswerSeconds: Int?
    /// Reference to a photo (a file name or URL); opaque to the store.
    public var photoRef: String?
    /// Position in the list the client sees; ascending.
    public var sortOrder: Int

    public init(
        id: String, displayName: String, sipURI: String, role: ContactRole,
        autoAnswerSeconds: Int? = nil, photoRef: String? = nil, sortOrder: Int
    ) {
        self.id = id
        self.displayName = displayName
        self.sipURI = sipURI
        self.role = role
        self.autoAnswerSeconds = autoAnswerSeconds
        self.photoRef = photoRef
        self.sortOrder = sortOrder
    }
}

public enum CallDirection: String, Codable, Sendable, CaseIterable {
    case outgoing
    case incoming
}

/// How a call ended. Stored as text with a CHECK constraint: adding a case needs a new
/// migration that rebuilds the table's constraint.
public enum CallOutcome: String, Codable, Sendable, CaseIterable {
    /// Someone answered and the call took place.
    case answered
    /// Outgoing: every post rang and nobody answered before the deadline.
    case unanswered
    /// The peer (or we, for incoming) declined with a final error response.
    case rejected
    case busy
    /// A local or protocol failure; see `failureReason`.
    case failed
    /// The caller (client or peer) gave up before an answer.
    case cancelled
    /// No post or proxy could be reached at all (network, DNS, TLS, timeouts).
    case unreachable
    /// Incoming call from someone not on the contact list; rejected.
    case notAContact
    /// Incoming call that rang and was not answered.
    case missed
    /// Found unfinished when the store was opened: the daemon stopped mid-call
    /// (crash or power cut).
    case interrupted
    /// Answered, then nothing more came from the other side (no RTP, no RTCP) for the
    /// liveness time: the other side vanished without hanging up. Needs `v2-liveness`.
    case connectionLost
}

/// Where a call record is in the upload pipeline.
public enum UploadState: String, Codable, Sendable, CaseIterable {
    /// The call is still in progress; nothing to upload yet.
    case notReady
    /// Ended and queued in the outbox.
    case pending
    /// The server acknowledged it (2xx).
    case uploaded
}

/// A call from someone on the contact list that nobody took and that no call with them has
/// followed yet (`BeeldzorgStore.missedCallsNotReturned`).
public struct MissedCall: Sendable, Equatable {
    public var peerURI: String
    public var peerName: String?
    /// When it started ringing.
    public var at: Date

    public init(peerURI: String, peerName: String?, at: Date) {
        self.peerURI = peerURI
        self.peerName = peerName
        self.at = at
    }
}

/// One row of the call log. `id` is a client-generated UUID string, also the upload id
/// the server uses to deduplicate.
public struct CallRecord: Codable, Sendable, Equatable, Identifiable {
    public var id: String
    public var direction: CallDirection
    public var peerURI: String
    public var peerName: String?
    public var startedAt: Date
    public var answeredAt: Date?
    public var endedAt: Date?
    /// `nil` while the call is in progress.
    public var outcome: CallOutcome?
    /// The posts (SIP URIs) tried, in the order they were tried.
    public var postsTried: [String]
    public var failureReason: String?
    public var uploadState: UploadState

    public init(
        id: String, direction: CallDirection, peerURI: String, peerName: String?,
        startedAt: Date, answeredAt: Date? = nil, endedAt: Date? = nil,
        outcome: CallOutcome? = nil, postsTried: [String] = [], failureReason: String? = nil,
        uploadState: UploadState = .notReady
    ) {
        self.id = id
        self.direction = direction
        self.peerURI = peerURI
        self.peerName = peerName
        self.startedAt = startedAt
        self.answeredAt = answeredAt
        self.endedAt = endedAt
        self.outcome = outcome
        self.postsTried = postsTried
        self.failureReason = failureReason
        self.uploadState = uploadState
    }
}

/// A request for the centrale to call the client back, queued when nobody could be reached.
public struct CallbackRequest: Codable, Sendable, Equatable, Identifiable {
    public var id: String
    public var createdAt: Date
    public var reason: String
    /// The call attempt that led to this request, if it is still in the call log.
    public var callID: String?
    public var delivered: Bool

    public init(id: String, createdAt: Date, reason: String, callID: String?, delivered: Bool) {
        self.id = id
        self.createdAt = createdAt
        self.reason = reason
        self.callID = callID
        self.delivered = delivered
    }
}

/// What an outbox entry carries.
public enum OutboxKind: String, Codable, Sendable, CaseIterable {
    case callRecord
    case callbackRequest
}

/// One pending upload. `id` equals the id of the record it carries, so the server can
/// deduplicate retries; `payload` is the JSON snapshot taken when it was enqueued.
public struct OutboxItem: Sendable, Equatable, Identifiable {
    public var id: String
    public var kind: OutboxKind
    public var payload: Data
    public var attempts: Int
    public var nextAttemptAt: Date
    public var createdAt: Date

    public init(
        id: String, kind: OutboxKind, payload: Data, attempts: Int, nextAttemptAt: Date,
        createdAt: Date
    ) {
        self.id = id
        self.kind = kind
        self.payload = payload
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.createdAt = createdAt
    }
}

/// How long the call log is kept. Both bounds apply; whichever removes more wins.
public struct RetentionPolicy: Sendable, Equatable {
    public var maxAge: TimeInterval
    public var maxCallRecords: Int

    public init(maxAge: TimeInterval = 90 * 24 * 3600, maxCallRecords: Int = 10_000) {
        precondition(maxAge > 0 && maxCallRecords > 0, "retention bounds must be positive")
        self.maxAge = maxAge
        self.maxCallRecords = maxCallRecords
    }

    public static let `default` = RetentionPolicy()
}
