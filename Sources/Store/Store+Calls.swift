public import Foundation
internal import GRDB

extension BeeldzorgStore {
    /// Records the start of a call (outgoing: the button was pressed; incoming: the INVITE
    /// arrived). `id` is the client-generated upload id (a UUID string). Committed durably
    /// before it returns.
    public func recordCallStarted(
        id: String, direction: CallDirection, peerURI: String, peerName: String?, at: Date
    ) throws {
        try writer.write { db in
            try db.execute(
                sql: """
                    INSERT INTO callRecord (id, direction, peerURI, peerName, startedAt)
                    VALUES (?, ?, ?, ?, ?)
                    """,
                arguments: [id, direction.rawValue, peerURI, peerName, at])
        }
    }

    /// Records that the call was answered (by us or by the peer), durably, before it
    /// returns: the daemon calls it before media starts, so a power cut during the call
    /// never leaves an answered call without `answeredAt`. Also the call's first heartbeat.
    public func recordAnswered(id: String, at: Date) throws {
        try writer.write { db in
            try db.execute(
                sql: "UPDATE callRecord SET answeredAt = ?, lastAliveAt = ? WHERE id = ? AND endedAt IS NULL",
                arguments: [at, at, id])
            if db.changesCount == 0 { try Self.throwMissingOrEnded(id: id, db: db) }
        }
    }

    /// The heartbeat of calls in progress: `at` is the last moment the tablet knew them up.
    /// Written every few seconds while a call is open; if the daemon dies (power cut,
    /// SIGKILL), the next open ends the call at its last heartbeat, not at the restart.
    /// Ended calls are left alone; one durable transaction for all of `ids`.
    public func recordAlive(ids: [String], at: Date) throws {
        guard !ids.isEmpty else { return }
        try writer.write { db in
            for id in ids {
                try db.execute(
                    sql: "UPDATE callRecord SET lastAliveAt = ? WHERE id = ? AND endedAt IS NULL",
                    arguments: [at, id])
            }
        }
    }

    /// When a call left unfinished was last known to be up: its last heartbeat, else its
    /// answer, else its start (nil for an unknown id).
    public func lastKnownAlive(id: String) throws -> Date? {
        try writer.read { db in
            try Row.fetchOne(
                db, sql: "SELECT startedAt, answeredAt, lastAliveAt FROM callRecord WHERE id = ?", arguments: [id]
            ).map(Self.lastKnownAlive(_:))
        }
    }

    /// Records how the call ended and queues the finished record for upload, in one
    /// durable transaction; then applies the retention policy.
    public func recordEnded(
        id: String, outcome: CallOutcome, postsTried: [String] = [], failureReason: String?,
        at: Date
    ) throws {
        let retention = self.retention
        try writer.write { db in
            try Self.end(
                db: db, id: id, outcome: outcome, postsTried: postsTried,
                failureReason: failureReason, at: at)
            _ = try Self.prune(db: db, retention: retention, now: at)
        }
    }

    /// The most recent calls, newest first, optionally only those started at or after `since`.
    public func recentCalls(limit: Int = 50, since: Date? = nil) throws -> [CallRecord] {
        try writer.read { db in
            let rows: [Row]
            if let since {
                rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT * FROM callRecord WHERE startedAt >= ?
                        ORDER BY startedAt DESC, rowid DESC LIMIT ?
                        """,
                    arguments: [since, limit])
            } else {
                rows = try Row.fetchAll(
                    db, sql: "SELECT * FROM callRecord ORDER BY startedAt DESC, rowid DESC LIMIT ?",
                    arguments: [limit])
            }
            return try rows.map(CallRecord.init(row:))
        }
    }

    /// Calls from people on the contact list that nobody took and that have not been followed
    /// by a call with the same person since: per caller the latest such call, newest first.
    /// "Nobody took" is `missed` (rang out, or the caller gave up) or `busy` (the client was
    /// in another call); a later answered call with that caller settles it. A declined call
    /// is not listed (the client chose), nor a stranger's (`notAContact`).
    public func missedCallsNotReturned(limit: Int = 3) throws -> [MissedCall] {
        try writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT c.peerURI, c.peerName, c.startedAt FROM callRecord c
                    WHERE c.direction = 'incoming' AND c.outcome IN ('missed', 'busy')
                      AND NOT EXISTS (
                        SELECT 1 FROM callRecord a
                        WHERE a.peerURI = c.peerURI AND a.answeredAt IS NOT NULL AND a.startedAt >= c.startedAt)
                      AND NOT EXISTS (
                        SELECT 1 FROM callRecord m
                        WHERE m.peerURI = c.peerURI AND m.direction = 'incoming' AND m.outcome IN ('missed', 'busy')
                          AND (m.startedAt > c.startedAt OR (m.startedAt = c.startedAt AND m.rowid > c.rowid)))
                    ORDER BY c.startedAt DESC, c.rowid DESC LIMIT ?
                    """,
                arguments: [limit]
            ).map { row in MissedCall(peerURI: row["peerURI"], peerName: row["peerName"], at: row["startedAt"]) }
        }
    }

    /// One call record by id.
    public func callRecord(id: String) throws -> CallRecord? {
        try writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM callRecord WHERE id = ?", arguments: [id])
                .map(CallRecord.init(row:))
        }
    }

    /// Number of rows in the call log.
    public func callRecordCount() throws -> Int {
        try writer.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM callRecord") ?? 0 }
    }

    /// Applies the retention policy to the call log (and to delivered callback requests).
    /// Runs at open and after every ended call; returns the number of call records removed.
    @discardableResult
    public func pruneCallLog(now: Date) throws -> Int {
        let retention = self.retention
        return try writer.write { db in try Self.prune(db: db, retention: retention, now: now) }
    }

    // MARK: - Internals

    /// Ends every call that has no end yet as `interrupted`, at the last moment the daemon
    /// knew it was up (its heartbeat; see `recordAlive`), never later than `now`. Only called
    /// at open, when no call of this process can be in progress.
    func markInterruptedCalls(at now: Date) throws -> Int {
        try writer.write { db in
            let open = try Row.fetchAll(
                db, sql: "SELECT id, postsTried, startedAt, answeredAt, lastAliveAt FROM callRecord WHERE endedAt IS NULL")
            for row in open {
                let posts = try Self.decodePosts(row["postsTried"])
                try Self.end(
                    db: db, id: row["id"], outcome: .interrupted, postsTried: posts,
                    failureReason: "the daemon stopped during the call", at: min(now, Self.lastKnownAlive(row)))
            }
            return open.count
        }
    }

    private static func lastKnownAlive(_ row: Row) -> Date {
        let started: Date = row["startedAt"]
        let moments: [Date?] = [row["answeredAt"], row["lastAliveAt"]]
        return moments.compactMap { $0 }.reduce(started, max)
    }

    private static func end(
        db: Database, id: String, outcome: CallOutcome, postsTried: [String],
        failureReason: String?, at: Date
    ) throws {
        let posts = String(decoding: try JSONEncoder().encode(postsTried), as: UTF8.self)
        try db.execute(
            sql: """
                UPDATE callRecord SET endedAt = ?, outcome = ?, postsTried = ?,
                    failureReason = ?, uploadState = 'pending'
                WHERE id = ? AND endedAt IS NULL
                """,
            arguments: [at, outcome.rawValue, posts, failureReason, id])
        if db.changesCount == 0 { try throwMissingOrEnded(id: id, db: db) }
        guard let record = try Row.fetchOne(
            db, sql: "SELECT * FROM callRecord WHERE id = ?", arguments: [id]
        ).map(CallRecord.init(row:)) else {
            throw StoreError.unknownCall(id: id)
        }
        try enqueueOutbox(
            db: db, id: id, kind: .callRecord, payload: try UploadCoding.encode(record), at: at)
    }

    private static func throwMissingOrEnded(id: String, db: Database) throws {
        let exists = try Bool.fetchOne(
            db, sql: "SELECT EXISTS (SELECT 1 FROM callRecord WHERE id = ?)", arguments: [id])
        throw (exists ?? false) ? StoreError.callAlreadyEnded(id: id) : StoreError.unknownCall(id: id)
    }

    static func prune(db: Database, retention: RetentionPolicy, now: Date) throws -> Int {
        let cutoff = now.addingTimeInterval(-retention.maxAge)
        try db.execute(sql: "DELETE FROM callRecord WHERE startedAt < ?", arguments: [cutoff])
        var removed = db.changesCount
        try db.execute(
            sql: """
                DELETE FROM callRecord WHERE rowid IN (
                    SELECT rowid FROM callRecord ORDER BY startedAt DESC, rowid DESC
                    LIMIT -1 OFFSET ?)
                """,
            arguments: [retention.maxCallRecords])
        removed += db.changesCount
        try db.execute(
            sql: "DELETE FROM callbackRequest WHERE delivered = 1 AND deliveryState = 'cleared' AND createdAt < ?",
            arguments: [cutoff])
        return removed
    }

    static func decodePosts(_ text: String) throws -> [String] {
        try JSONDecoder().decode([String].self, from: Data(text.utf8))
    }
}

extension CallRecord {
    init(row: Row) throws {
        let id: String = row["id"]
        func parse<E: RawRepresentable>(_ column: String, as: E.Type) throws -> E
        where E.RawValue == String {
            let text: String = row[column]
            guard let value = E(rawValue: text) else {
                throw DatabaseError(
                    resultCode: .SQLITE_MISMATCH, message: "callRecord \(id): bad \(column) \(text)")
            }
            return value
        }
        let outcomeText: String? = row["outcome"]
        self.init(
            id: id,
            direction: try parse("direction", as: CallDirection.self),
            peerURI: row["peerURI"],
            peerName: row["peerName"],
            startedAt: row["startedAt"],
            answeredAt: row["answeredAt"],
            endedAt: row["endedAt"],
            outcome: try outcomeText.map { text in
                guard let o = CallOutcome(rawValue: text) else {
                    throw DatabaseError(
                        resultCode: .SQLITE_MISMATCH, message: "callRecord \(id): bad outcome \(text)")
                }
                return o
            },
            postsTried: try BeeldzorgStore.decodePosts(row["postsTried"]),
            failureReason: row["failureReason"],
            uploadState: try parse("uploadState", as: UploadState.self))
    }
}
