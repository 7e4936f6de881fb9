public import Foundation
internal import GRDB

extension BeeldzorgStore {
    // MARK: - Callback requests

    /// Queues a request for the centrale to call back (nobody could be reached), and an
    /// outbox item that carries it to the server; one durable transaction.
    @discardableResult
    /// `pressedAt` and `postsTried` are what its MESSAGE to the centrale carries
    /// (`Store+CallbackDelivery.swift`); the request starts pending delivery there.
    public func enqueueCallbackRequest(
        id: String = RandomIdentifier.string(), reason: String, callID: String?, pressedAt: Date? = nil,
        postsTried: [String] = [], at: Date
    ) throws -> CallbackRequest {
        let request = CallbackRequest(
            id: id, createdAt: at, reason: reason, callID: callID, delivered: false)
        let posts = String(decoding: try JSONEncoder().encode(postsTried), as: UTF8.self)
        try writer.write { db in
            try db.execute(
                sql: """
                    INSERT INTO callbackRequest (id, createdAt, reason, callID, delivered, pressedAt, postsTried)
                    VALUES (?, ?, ?, ?, 0, ?, ?)
                    """,
                arguments: [id, at, reason, callID, pressedAt ?? at, posts])
            try Self.enqueueOutbox(
                db: db, id: id, kind: .callbackRequest,
                payload: try UploadCoding.encode(request), at: at)
        }
        return request
    }

    /// Callback requests, oldest first; by default only those not yet delivered.
    public func callbackRequests(includeDelivered: Bool = false) throws -> [CallbackRequest] {
        try writer.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM callbackRequest"
                    + (includeDelivered ? "" : " WHERE delivered = 0")
                    + " ORDER BY createdAt, rowid"
            ).map { row in
                CallbackRequest(
                    id: row["id"], createdAt: row["createdAt"], reason: row["reason"],
                    callID: row["callID"], delivered: row["delivered"])
            }
        }
    }

    /// Marks a callback request delivered (the server acknowledged it).
    public func markCallbackDelivered(id: String) throws {
        try writer.write { db in
            try db.execute(sql: "UPDATE callbackRequest SET delivered = 1 WHERE id = ?", arguments: [id])
            if db.changesCount == 0 { throw StoreError.unknownCallbackRequest(id: id) }
        }
    }

    // MARK: - Outbox

    /// Items whose next attempt is due at `now`, oldest first.
    public func dueOutboxItems(at now: Date, limit: Int = 20) throws -> [OutboxItem] {
        try writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM outbox WHERE nextAttemptAt <= ?
                    ORDER BY nextAttemptAt, createdAt, rowid LIMIT ?
                    """,
                arguments: [now, limit]
            ).map(OutboxItem.init(row:))
        }
    }

    /// Every item in the outbox, due or not, oldest first.
    public func outboxItems() throws -> [OutboxItem] {
        try writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM outbox ORDER BY createdAt, rowid")
                .map(OutboxItem.init(row:))
        }
    }

    /// The server acknowledged the item (2xx): removes it and marks what it carried as
    /// uploaded/delivered, in one transaction.
    public func outboxDelivered(id: String) throws {
        try writer.write { db in
            guard let kindText = try String.fetchOne(
                db, sql: "SELECT kind FROM outbox WHERE id = ?", arguments: [id])
            else { throw StoreError.unknownOutboxItem(id: id) }
            try db.execute(sql: "DELETE FROM outbox WHERE id = ?", arguments: [id])
            switch OutboxKind(rawValue: kindText) {
            case .callRecord:
                // The record may already have been pruned; that is fine.
                try db.execute(
                    sql: "UPDATE callRecord SET uploadState = 'uploaded' WHERE id = ?",
                    arguments: [id])
            case .callbackRequest:
                try db.execute(
                    sql: "UPDATE callbackRequest SET delivered = 1 WHERE id = ?", arguments: [id])
            case nil:
                break
            }
        }
    }

    /// An attempt failed: counts it and sets when to try again (the caller's backoff).
    public func outboxAttemptFailed(id: String, nextAttemptAt: Date) throws {
        try writer.write { db in
            try db.execute(
                sql: "UPDATE outbox SET attempts = attempts + 1, nextAttemptAt = ? WHERE id = ?",
                arguments: [nextAttemptAt, id])
            if db.changesCount == 0 { throw StoreError.unknownOutboxItem(id: id) }
        }
    }

    static func enqueueOutbox(
        db: Database, id: String, kind: OutboxKind, payload: Data, at: Date
    ) throws {
        // Same id again (should not happen) replaces the payload: the server deduplicates
        // by id, so only the newest snapshot matters.
        try db.execute(
            sql: """
                INSERT INTO outbox (id, kind, payload, attempts, nextAttemptAt, createdAt)
                VALUES (?, ?, ?, 0, ?, ?)
                ON CONFLICT(id) DO UPDATE SET payload = excluded.payload,
                    nextAttemptAt = excluded.nextAttemptAt
                """,
            arguments: [id, kind.rawValue, String(decoding: payload, as: UTF8.self), at, at])
    }

    // MARK: - Settings

    /// The value stored for `key`, if any.
    public func setting(_ key: String) throws -> String? {
        try writer.read { db in
            try String.fetchOne(db, sql: "SELECT value FROM setting WHERE key = ?", arguments: [key])
        }
    }

    /// Stores `value` for `key`; `nil` removes the key.
    public func setSetting(_ key: String, to value: String?) throws {
        try writer.write { db in
            if let value {
                try db.execute(
                    sql: """
                        INSERT INTO setting (key, value) VALUES (?, ?)
                        ON CONFLICT(key) DO UPDATE SET value = excluded.value
                        """,
                    arguments: [key, value])
            } else {
                try db.execute(sql: "DELETE FROM setting WHERE key = ?", arguments: [key])
            }
        }
    }

    /// All settings.
    public func allSettings() throws -> [String: String] {
        try writer.read { db in
            var result: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT key, value FROM setting") {
                result[row["key"]] = row["value"] as String
            }
            return result
        }
    }
}

extension OutboxItem {
    init(row: Row) throws {
        let kindText: String = row["kind"]
        guard let kind = OutboxKind(rawValue: kindText) else {
            throw DatabaseError(resultCode: .SQLITE_MISMATCH, message: "outbox: bad kind \(kindText)")
        }
        let payload: String = row["payload"]
        self.init(
            id: row["id"], kind: kind, payload: Data(payload.utf8), attempts: row["attempts"],
            nextAttemptAt: row["nextAttemptAt"], createdAt: row["createdAt"])
    }
}

/// The JSON the server receives. Dates are ISO 8601 in UTC with milliseconds; keys sorted
/// so that the same record always yields the same bytes.
enum UploadCoding {
    private struct CallRecordUpload: Encodable {
        var id: String
        var direction: CallDirection
        var peerURI: String
        var peerName: String?
        var startedAt: Date
        var answeredAt: Date?
        var endedAt: Date?
        var outcome: CallOutcome?
        var postsTried: [String]
        var failureReason: String?
    }

    private static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(
                date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        return encoder
    }

    static func encode(_ record: CallRecord) throws -> Data {
        try encoder().encode(
            CallRecordUpload(
                id: record.id, direction: record.direction, peerURI: record.peerURI,
                peerName: record.peerName, startedAt: record.startedAt,
                answeredAt: record.answeredAt, endedAt: record.endedAt, outcome: record.outcome,
                postsTried: record.postsTried, failureReason: record.failureReason))
    }

    static func encode(_ request: CallbackRequest) throws -> Data {
        try encoder().encode(request)
    }
}
