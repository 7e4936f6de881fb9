public import Foundation
public import Store

/// What `beeldzorgctl provision status` shows: the last provisioning attempt and the upload
/// outbox. Built from the store alone, so the CLI can show it while the daemon is stopped;
/// the daemon adds what only it knows (the last upload pass).
public struct ProvisioningStatus: Codable, Sendable, Equatable {
    /// The configured document URL; nil when the CLI read the store without the daemon.
    public var url: String?
    /// The daemon runs a provisioner (`provisioning:` is configured and its token readable).
    public var configured: Bool?
    /// Why it is configured but not running (e.g. the token file is unreadable).
    public var problem: String?
    public var lastAttemptAt: Date?
    public var lastResult: String?
    public var etag: String?
    public var appliedAt: Date?
    public var contacts: Int
    public var outboxLength: Int
    public var oldestPendingAt: Date?
    public var oldestPendingKind: String?
    public var oldestPendingAttempts: Int?
    public var oldestPendingNextAttemptAt: Date?
    public var lastUploadAt: Date?
    public var lastUploadResult: String?

    public init(store: BeeldzorgStore) throws {
        let state = try store.provisioningState()
        let outbox = try store.outboxItems()
        let oldest = outbox.min { $0.createdAt < $1.createdAt }
        lastAttemptAt = state.lastAttemptAt
        lastResult = state.lastResult
        etag = state.etag
        appliedAt = state.appliedAt
        contacts = try store.contacts().count
        outboxLength = outbox.count
        oldestPendingAt = oldest?.createdAt
        oldestPendingKind = oldest?.kind.rawValue
        oldestPendingAttempts = oldest?.attempts
        oldestPendingNextAttemptAt = oldest?.nextAttemptAt
    }
}

/// What `provision-sync` did: the document fetch and one pass over the outbox.
public struct ProvisioningSyncResult: Codable, Sendable, Equatable {
    /// "applied", "not-modified", "rejected" or "failed".
    public var result: String
    /// The outcome in one line (``ProvisioningOutcome/description``).
    public var detail: String
    public var delivered: Int
    public var failed: Int
    public var rejected: Int
    public var status: ProvisioningStatus

    public init(outcome: ProvisioningOutcome, upload: UploadPass, status: ProvisioningStatus) {
        switch outcome {
        case .applied: result = "applied"
        case .notModified: result = "not-modified"
        case .rejected: result = "rejected"
        case .failed: result = "failed"
        }
        detail = outcome.description
        delivered = upload.delivered.count
        failed = upload.failed.count
        rejected = upload.rejected.count
        self.status = status
    }
}
