public import Foundation
internal import GRDB

/// Where one callback request stands in its delivery to the centrale (issue 19).
public enum CallbackDeliveryState: String, Codable, Sendable, CaseIterable {
    /// Not yet acknowledged by the centrale: the tablet keeps sending it.
    case pending
    /// A 2xx to its MESSAGE came back: the callback is promised.
    case acknowledged
    /// The centrale called the tablet, or a post answered it: done.
    case cleared
}

/// A callback request with its delivery state, as `CallbackDelivery` needs it after a restart.
public struct CallbackDeliveryRecord: Sendable, Equatable, Identifiable {
    public var id: String
    public var createdAt: Date
    /// When the button was pressed for the attempt that reached nobody (else `createdAt`).
    public var pressedAt: Date
    public var reason: String
    public var postsTried: [String]
    public var state: CallbackDeliveryState
    public var acknowledgedAt: Date?
    /// "primary" or "fallback": which callback URI acknowledged it.
    public var acknowledgedBy: String?
    public var escalatedAt: Date?
    public var clearedAt: Date?
}

extension BeeldzorgStore {
    /// Requests not cleared yet (pending or acknowledged), oldest first.
    public func outstandingCallbackRequests() throws -> [CallbackDeliveryRecord] {
        try callbackDeliveries(where: "deliveryState != 'cleared'")
    }

    /// Every callback request with its delivery state, oldest first (technicians, tests).
    public func callbackDeliveries() throws -> [CallbackDeliveryRecord] {
        try callbackDeliveries(where: "1")
    }

    private func callbackDeliveries(where condition: String) throws -> [CallbackDeliveryRecord] {
        try writer.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM callbackRequest WHERE \(condition) ORDER BY createdAt, rowid"
            ).map { row in
                let posts: String = row["postsTried"]
                let created: Date = row["createdAt"]
                let state: String = row["deliveryState"]
                return CallbackDeliveryRecord(
                    id: row["id"], createdAt: created, pressedAt: row["pressedAt"] ?? created, reason: row["reason"],
                    postsTried: (try? JSONDecoder().decode([String].self, from: Data(posts.utf8))) ?? [],
                    state: CallbackDeliveryState(rawValue: state) ?? .pending,
                    acknowledgedAt: row["acknowledgedAt"], acknowledgedBy: row["acknowledgedBy"],
                    escalatedAt: row["escalatedAt"], clearedAt: row["clearedAt"])
            }
        }
    }

    /// The centrale acknowledged the request (a 2xx from `by`: "primary" or "fallback").
    /// A request already acknowledged or cleared keeps what it has.
    public func markCallbackAcknowledged(id: String, at: Date, by target: String) throws {
        try writer.write { db in
            try db.execute(
                sql: """
                    UPDATE callbackRequest SET deliveryState = 'acknowledged', acknowledgedAt = ?, acknowledgedBy = ?
                    WHERE id = ? AND deliveryState = 'pending'
                    """,
                arguments: [at, target, id])
        }
    }

    /// Not acknowledged in time: from now on it goes to the fallback URI.
    public func markCallbackEscalated(id: String, at: Date) throws {
        try writer.write { db in
            try db.execute(
                sql: "UPDATE callbackRequest SET escalatedAt = ? WHERE id = ? AND escalatedAt IS NULL",
                arguments: [at, id])
        }
    }

    /// The centrale called (or was reached): the requests are done. `callID`, the call that
    /// reached the centrale, is linked to the oldest of them in the call log.
    public func markCallbacksCleared(ids: [String], at: Date, callID: String?) throws {
        guard !ids.isEmpty else { return }
        try writer.write { db in
            for id in ids {
                try db.execute(
                    sql: "UPDATE callbackRequest SET deliveryState = 'cleared', clearedAt = ? WHERE id = ? AND deliveryState != 'cleared'",
                    arguments: [at, id])
            }
            if let callID {
                try db.execute(
                    sql: "UPDATE callRecord SET callbackRequestID = ? WHERE id = ?", arguments: [ids[0], callID])
            }
        }
    }

    /// The callback request a call answered, if it was the centrale calling back (or reached).
    public func callbackRequestID(forCall callID: String) throws -> String? {
        try writer.read { db in
            try String.fetchOne(db, sql: "SELECT callbackRequestID FROM callRecord WHERE id = ?", arguments: [callID])
        }
    }

    /// When a call started (nil for an unknown id).
    public func callStartedAt(id: String) throws -> Date? {
        try writer.read { db in
            try Date.fetchOne(db, sql: "SELECT startedAt FROM callRecord WHERE id = ?", arguments: [id])
        }
    }
}
