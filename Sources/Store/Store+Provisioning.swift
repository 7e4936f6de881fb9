public import Foundation
internal import GRDB

/// What the last provisioning attempt did, kept in the `setting` table so that
/// `beeldzorgctl` and the daemon's status can show it.
public struct ProvisioningState: Sendable, Equatable {
    /// The ETag of the document now applied (sent back as If-None-Match).
    public var etag: String?
    /// When a document was last applied.
    public var appliedAt: Date?
    /// When the server was last asked.
    public var lastAttemptAt: Date?
    /// One line about the last attempt ("applied: 12 contacts", "not modified",
    /// "rejected: …", "failed: …").
    public var lastResult: String?

    public init(etag: String?, appliedAt: Date?, lastAttemptAt: Date?, lastResult: String?) {
        self.etag = etag
        self.appliedAt = appliedAt
        self.lastAttemptAt = lastAttemptAt
        self.lastResult = lastResult
    }
}

extension BeeldzorgStore {
    enum ProvisioningKey {
        static let etag = "provisioning.etag"
        static let appliedAt = "provisioning.appliedAt"
        static let lastAttemptAt = "provisioning.lastAttemptAt"
        static let lastResult = "provisioning.lastResult"
        /// Prefix of settings that came from the server; a new document replaces them all.
        static let settingPrefix = "provisioned."
    }

    /// Applies a provisioning document in ONE transaction: the contact list is replaced,
    /// every `provisioned.*` setting is replaced by `settings` (keys are stored with that
    /// prefix), and the ETag and time are recorded. On any error nothing changes.
    public func applyProvisioning(
        contacts: [Contact], settings: [String: String], etag: String?, at: Date
    ) throws {
        let rows = try Self.validated(contacts)
        try writer.write { db in
            try db.execute(sql: "DELETE FROM contact")
            for (contact, key) in rows {
                try db.execute(
                    sql: """
                        INSERT INTO contact (id, displayName, sipURI, uriKey, role,
                            autoAnswerSeconds, photoRef, sortOrder) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        contact.id, contact.displayName, contact.sipURI, key,
                        contact.role.rawValue, contact.autoAnswerSeconds, contact.photoRef,
                        contact.sortOrder,
                    ])
            }
            try db.execute(
                sql: "DELETE FROM setting WHERE substr(key, 1, ?) = ?",
                arguments: [ProvisioningKey.settingPrefix.count, ProvisioningKey.settingPrefix])
            for (key, value) in settings.sorted(by: { $0.key < $1.key }) {
                try Self.put(db, ProvisioningKey.settingPrefix + key, value)
            }
            if let etag {
                try Self.put(db, ProvisioningKey.etag, etag)
            } else {
                try db.execute(sql: "DELETE FROM setting WHERE key = ?", arguments: [ProvisioningKey.etag])
            }
            try Self.put(db, ProvisioningKey.appliedAt, Self.timestamp(at))
        }
    }

    /// Records the outcome of a provisioning attempt (whatever it was).
    public func recordProvisioningAttempt(result: String, at: Date) throws {
        try writer.write { db in
            try Self.put(db, ProvisioningKey.lastAttemptAt, Self.timestamp(at))
            try Self.put(db, ProvisioningKey.lastResult, result)
        }
    }

    public func provisioningState() throws -> ProvisioningState {
        let all = try allSettings()
        return ProvisioningState(
            etag: all[ProvisioningKey.etag],
            appliedAt: all[ProvisioningKey.appliedAt].flatMap(Self.parseTimestamp),
            lastAttemptAt: all[ProvisioningKey.lastAttemptAt].flatMap(Self.parseTimestamp),
            lastResult: all[ProvisioningKey.lastResult])
    }

    /// The settings that came from the server, without their `provisioned.` prefix.
    public func provisionedSettings() throws -> [String: String] {
        var result: [String: String] = [:]
        for (key, value) in try allSettings() where key.hasPrefix(ProvisioningKey.settingPrefix) {
            result[String(key.dropFirst(ProvisioningKey.settingPrefix.count))] = value
        }
        return result
    }

    private static func put(_ db: Database, _ key: String, _ value: String) throws {
        try db.execute(
            sql: """
                INSERT INTO setting (key, value) VALUES (?, ?)
                ON CONFLICT(key) DO UPDATE SET value = excluded.value
                """,
            arguments: [key, value])
    }

    private static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    private static func parseTimestamp(_ text: String) -> Date? {
        try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
