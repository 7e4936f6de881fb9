import Foundation
import Testing
@testable import Store

@Suite("Schema and migrations")
struct SchemaTests {
    @Test func migratesFromEmptyToEveryMigration() throws {
        let store = try BeeldzorgStore.inMemory()
        #expect(try store.appliedMigrations() == Schema.migrationNames)
        #expect(try store.integrityCheck() == ["ok"])
    }

    /// For every shipped migration: a database left at that version, holding data, is
    /// brought to the latest version without losing the data.
    @Test(arguments: Schema.migrationNames)
    func migratesFromEarlierVersion(_ version: String) throws {
        let store = try BeeldzorgStore.inMemory(migratedUpTo: version)
        #expect(try store.appliedMigrations().last == version)
        try store.executeRaw(
            """
            INSERT INTO contact (id, displayName, sipURI, uriKey, role, sortOrder)
            VALUES ('c1', 'Anna', 'sip:anna@example.org', 'anna@example.org', 'family', 1);
            INSERT INTO callRecord (id, direction, peerURI, startedAt)
            VALUES ('call-1', 'outgoing', 'sip:post1@example.org', '2026-11-01 10:00:00.000');
            INSERT INTO setting (key, value) VALUES ('k', 'v');
            """)
        try store.migrateToLatest()
        #expect(try store.appliedMigrations() == Schema.migrationNames)
        #expect(try store.contacts().map(\.id) == ["c1"])
        #expect(try store.callRecord(id: "call-1")?.peerURI == "sip:post1@example.org")
        #expect(try store.setting("k") == "v")
    }

    /// v2-liveness rebuilds callRecord: rows, the callback request's reference to its call,
    /// and ON DELETE SET NULL all survive; the new outcome and column are there.
    @Test func livenessMigrationKeepsCallsAndTheirCallbackRequests() throws {
        let store = try BeeldzorgStore.inMemory(migratedUpTo: "v1-initial")
        try store.executeRaw(
            """
            INSERT INTO callRecord (id, direction, peerURI, startedAt, answeredAt, endedAt, outcome, uploadState)
            VALUES ('call-1', 'outgoing', 'centrale', '2026-11-01 10:00:00.000', '2026-11-01 10:00:02.000',
                    '2026-11-01 10:05:00.000', 'answered', 'pending');
            INSERT INTO callRecord (id, direction, peerURI, startedAt) VALUES ('call-2', 'outgoing', 'centrale', '2026-11-01 11:00:00.000');
            INSERT INTO callbackRequest (id, createdAt, reason, callID) VALUES ('cb-1', '2026-11-01 10:05:00.000', 'r', 'call-1');
            """)
        try store.migrateToLatest()
        #expect(try store.appliedMigrations() == Schema.migrationNames)
        #expect(try store.integrityCheck() == ["ok"])
        #expect(try store.fetchRawStrings("PRAGMA foreign_key_check") == [])
        #expect(try store.callRecord(id: "call-1")?.outcome == .answered)
        #expect(try store.callRecord(id: "call-2")?.endedAt == nil)
        #expect(try store.fetchRawStrings("SELECT callID FROM callbackRequest") == ["call-1"])
        try store.executeRaw("DELETE FROM callRecord WHERE id = 'call-1'")
        #expect(try store.fetchRawStrings("SELECT count(*) FROM callbackRequest WHERE callID IS NULL") == ["1"])
        try store.recordAlive(ids: ["call-2"], at: Date(timeIntervalSince1970: 1_800_000_000))
        try store.recordEnded(id: "call-2", outcome: .connectionLost, failureReason: "connection lost",
                              at: Date(timeIntervalSince1970: 1_800_000_005))
        #expect(try store.callRecord(id: "call-2")?.outcome == .connectionLost)
        #expect(try store.fetchRawStrings("SELECT count(*) FROM callRecord WHERE lastAliveAt IS NOT NULL") == ["1"])
    }

    /// v3-callback-delivery: requests made before it were promised under the old rule; they
    /// are cleared, not sent to the centrale after an update. New ones start pending; the
    /// delivery state is checked; a call can point at a request.
    @Test func callbackDeliveryMigrationClearsOldRequests() throws {
        let store = try BeeldzorgStore.inMemory(migratedUpTo: "v2-liveness")
        try store.executeRaw(
            """
            INSERT INTO callbackRequest (id, createdAt, reason) VALUES ('old', '2026-11-01 10:05:00.000', 'r');
            """)
        try store.migrateToLatest()
        #expect(try store.appliedMigrations() == Schema.migrationNames)
        #expect(try store.fetchRawStrings("SELECT deliveryState FROM callbackRequest") == ["cleared"])
        #expect(try store.outstandingCallbackRequests().isEmpty)
        try store.enqueueCallbackRequest(id: "new", reason: "r", callID: nil, at: Date(timeIntervalSince1970: 1_800_000_000))
        #expect(try store.outstandingCallbackRequests().map(\.id) == ["new"])
        #expect(throws: (any Error).self) {
            try store.executeRaw("UPDATE callbackRequest SET deliveryState = 'lost' WHERE id = 'new'")
        }
        try store.executeRaw(
            "INSERT INTO callRecord (id, direction, peerURI, startedAt, callbackRequestID) VALUES ('c', 'incoming', 'sip:p@h', '2026-11-02', 'new')")
        #expect(try store.fetchRawStrings("PRAGMA foreign_key_check") == [])
    }

    @Test(arguments: [
        // enum CHECKs
        "INSERT INTO contact (id, displayName, sipURI, uriKey, role, sortOrder) VALUES ('x', 'X', 'sip:x@h', 'x@h', 'boss', 1)",
        "INSERT INTO callRecord (id, direction, peerURI, startedAt) VALUES ('x', 'sideways', 'sip:x@h', '2026-01-01')",
        "INSERT INTO callRecord (id, direction, peerURI, startedAt, endedAt, outcome) VALUES ('x', 'incoming', 'sip:x@h', '2026-01-01', '2026-01-01', 'exploded')",
        "INSERT INTO callRecord (id, direction, peerURI, startedAt, uploadState) VALUES ('x', 'incoming', 'sip:x@h', '2026-01-01', 'lost')",
        "INSERT INTO outbox (id, kind, payload, nextAttemptAt, createdAt) VALUES ('x', 'email', '{}', '2026-01-01', '2026-01-01')",
        // NOT NULL
        "INSERT INTO contact (id, displayName, sipURI, uriKey, role, sortOrder) VALUES ('x', NULL, 'sip:x@h', 'x@h', 'family', 1)",
        "INSERT INTO callRecord (id, direction, peerURI, startedAt) VALUES ('x', 'incoming', 'sip:x@h', NULL)",
        "INSERT INTO setting (key, value) VALUES ('k', NULL)",
        // other CHECKs
        "INSERT INTO contact (id, displayName, sipURI, uriKey, role, autoAnswerSeconds, sortOrder) VALUES ('x', 'X', 'sip:x@h', 'x@h', 'family', -1, 1)",
        "INSERT INTO callRecord (id, direction, peerURI, startedAt, postsTried) VALUES ('x', 'incoming', 'sip:x@h', '2026-01-01', 'not json')",
        "INSERT INTO callRecord (id, direction, peerURI, startedAt, endedAt) VALUES ('x', 'incoming', 'sip:x@h', '2026-01-01', '2026-01-01')",
        "INSERT INTO outbox (id, kind, payload, nextAttemptAt, createdAt) VALUES ('x', 'callRecord', '{broken', '2026-01-01', '2026-01-01')",
        "INSERT INTO callbackRequest (id, createdAt, reason, delivered) VALUES ('x', '2026-01-01', 'r', 2)",
        // foreign key
        "INSERT INTO callbackRequest (id, createdAt, reason, callID) VALUES ('x', '2026-01-01', 'r', 'no-such-call')",
    ])
    func schemaRejects(_ sql: String) throws {
        let store = try BeeldzorgStore.inMemory()
        #expect(throws: (any Error).self) { try store.executeRaw(sql) }
    }

    @Test func uniqueSIPURI() throws {
        let store = try BeeldzorgStore.inMemory()
        try store.executeRaw(
            "INSERT INTO contact (id, displayName, sipURI, uriKey, role, sortOrder) VALUES ('a', 'A', 'sip:x@h', 'x@h', 'family', 1)")
        #expect(throws: (any Error).self) {
            try store.executeRaw(
                "INSERT INTO contact (id, displayName, sipURI, uriKey, role, sortOrder) VALUES ('b', 'B', 'sip:x@h', 'x@h2', 'family', 2)")
        }
    }

    @Test func fileDatabaseIsWALWithFullSync() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let store = try BeeldzorgStore(path: dir.dbPath)
        #expect(store.openFault == nil)
        #expect(try store.fetchRawStrings("PRAGMA journal_mode") == ["wal"])
        #expect(try store.fetchRawStrings("PRAGMA foreign_keys") == ["1"])
        // The writer connection is the one that commits; 2 = FULL.
        #expect(try store.fetchRawStringsOnWriter("PRAGMA synchronous") == ["2"])

        let normal = try BeeldzorgStore(
            path: dir.path + "/normal.sqlite", options: StoreOptions(durability: .normal))
        #expect(try normal.fetchRawStringsOnWriter("PRAGMA synchronous") == ["1"])
    }
}
