import Foundation
import Testing
@testable import Store

@Suite("Call log, outbox, callbacks, settings")
struct CallLogTests {
    @Test func callLifecycleQueuesUpload() throws {
        let store = try BeeldzorgStore.inMemory()
        try store.recordCallStarted(
            id: "c-1", direction: .outgoing, peerURI: "sip:post1@centrale.example",
            peerName: "Centrale", at: t(0))
        var record = try #require(try store.callRecord(id: "c-1"))
        #expect(record.outcome == nil && record.endedAt == nil && record.uploadState == .notReady)
        #expect(try store.outboxItems().isEmpty)

        try store.recordAnswered(id: "c-1", at: t(5))
        try store.recordEnded(
            id: "c-1", outcome: .answered,
            postsTried: ["sip:post2@centrale.example", "sip:post1@centrale.example"],
            failureReason: nil, at: t(65))
        record = try #require(try store.callRecord(id: "c-1"))
        #expect(
            record
                == CallRecord(
                    id: "c-1", direction: .outgoing, peerURI: "sip:post1@centrale.example",
                    peerName: "Centrale", startedAt: t(0), answeredAt: t(5), endedAt: t(65),
                    outcome: .answered,
                    postsTried: ["sip:post2@centrale.example", "sip:post1@centrale.example"],
                    failureReason: nil, uploadState: .pending))

        let items = try store.outboxItems()
        #expect(items.map(\.id) == ["c-1"])
        #expect(items.first?.kind == .callRecord)
        let payload = try #require(
            try JSONSerialization.jsonObject(with: items[0].payload) as? [String: Any])
        #expect(payload["id"] as? String == "c-1")
        #expect(payload["outcome"] as? String == "answered")
        #expect(payload["postsTried"] as? [String] == record.postsTried)
        #expect(payload["startedAt"] as? String == "2027-01-15T08:00:00.000Z")
        #expect(payload["uploadState"] == nil)

        try store.outboxDelivered(id: "c-1")
        #expect(try store.outboxItems().isEmpty)
        #expect(try store.callRecord(id: "c-1")?.uploadState == .uploaded)
    }

    @Test func misuseIsRefused() throws {
        let store = try BeeldzorgStore.inMemory()
        #expect(throws: StoreError.unknownCall(id: "nope")) {
            try store.recordAnswered(id: "nope", at: t(0))
        }
        #expect(throws: StoreError.unknownCall(id: "nope")) {
            try store.recordEnded(id: "nope", outcome: .failed, failureReason: "x", at: t(0))
        }
        try store.recordCallStarted(id: "c", direction: .incoming, peerURI: "sip:a@b", peerName: nil, at: t(0))
        #expect(throws: (any Error).self) {  // duplicate id
            try store.recordCallStarted(id: "c", direction: .incoming, peerURI: "sip:a@b", peerName: nil, at: t(1))
        }
        try store.recordEnded(id: "c", outcome: .notAContact, failureReason: nil, at: t(1))
        #expect(throws: StoreError.callAlreadyEnded(id: "c")) {
            try store.recordEnded(id: "c", outcome: .answered, failureReason: nil, at: t(2))
        }
        #expect(throws: StoreError.callAlreadyEnded(id: "c")) {
            try store.recordAnswered(id: "c", at: t(2))
        }
        #expect(try store.callRecord(id: "c")?.outcome == .notAContact)
    }

    @Test func recentCallsNewestFirstWithLimitAndSince() throws {
        let store = try BeeldzorgStore.inMemory()
        for i in 0..<5 {
            try store.recordCallStarted(
                id: "c\(i)", direction: .incoming, peerURI: "sip:p\(i)@h", peerName: nil, at: t(i * 60))
            try store.recordEnded(id: "c\(i)", outcome: .missed, failureReason: nil, at: t(i * 60 + 30))
        }
        #expect(try store.recentCalls(limit: 3).map(\.id) == ["c4", "c3", "c2"])
        #expect(try store.recentCalls(limit: 10, since: t(120)).map(\.id) == ["c4", "c3", "c2"])
        #expect(try store.recentCalls(limit: 10, since: t(121)).map(\.id) == ["c4", "c3"])
    }

    @Test func retentionByCountAndAge() throws {
        let store = try BeeldzorgStore.inMemory(
            options: StoreOptions(retention: RetentionPolicy(maxAge: 3600, maxCallRecords: 3)))
        for i in 0..<5 {
            try store.recordCallStarted(
                id: "c\(i)", direction: .outgoing, peerURI: "sip:p@h", peerName: nil, at: t(i))
            try store.recordEnded(id: "c\(i)", outcome: .unanswered, failureReason: nil, at: t(i + 1))
        }
        // Pruned after each ended call: only the newest three remain.
        #expect(try store.recentCalls(limit: 100).map(\.id) == ["c4", "c3", "c2"])
        // Outbox items outlive pruning: nothing un-uploaded is lost.
        #expect(try store.outboxItems().count == 5)

        try store.recordCallStarted(id: "late", direction: .outgoing, peerURI: "sip:p@h", peerName: nil, at: t(4000))
        try store.recordEnded(id: "late", outcome: .answered, failureReason: nil, at: t(4000))
        // c2…c4 started more than an hour before t(4000).
        #expect(try store.recentCalls(limit: 100).map(\.id) == ["late"])
        #expect(try store.pruneCallLog(now: t(8000)) == 1)
        #expect(try store.callRecordCount() == 0)
    }

    @Test func retentionRunsAtOpenAndInterruptedCallsAreClosed() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        do {
            let store = try BeeldzorgStore(path: dir.dbPath, options: StoreOptions(now: { t(0) }))
            try store.recordCallStarted(id: "old", direction: .outgoing, peerURI: "sip:p@h", peerName: nil, at: t(0))
            try store.recordEnded(id: "old", outcome: .answered, failureReason: nil, at: t(10))
            try store.recordCallStarted(id: "open", direction: .outgoing, peerURI: "sip:p@h", peerName: nil, at: t(100))
            try store.close()
        }
        let reopened = try BeeldzorgStore(
            path: dir.dbPath,
            options: StoreOptions(retention: RetentionPolicy(maxAge: 3600), now: { t(3650) }))
        #expect(reopened.openFault == nil)
        #expect(try reopened.callRecord(id: "old") == nil)
        let open = try #require(try reopened.callRecord(id: "open"))
        #expect(open.outcome == .interrupted)
        // No heartbeat was written: the last moment it was known up is its start, not the restart.
        #expect(open.endedAt == t(100))
        #expect(open.uploadState == .pending)
        #expect(try reopened.outboxItems().map(\.id).sorted() == ["old", "open"])
    }

    /// Issue 19: a call interrupted by a power cut ends at its last heartbeat (`lastAliveAt`),
    /// not at the restart; its answer stays on record.
    @Test func interruptedCallsEndAtTheirLastHeartbeat() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        do {
            let store = try BeeldzorgStore(path: dir.dbPath, options: StoreOptions(now: { t(0) }))
            try store.recordCallStarted(id: "talking", direction: .outgoing, peerURI: "centrale", peerName: nil, at: t(100))
            try store.recordAnswered(id: "talking", at: t(103))
            try store.recordCallStarted(id: "ringing", direction: .incoming, peerURI: "sip:a@h", peerName: nil, at: t(104))
            try store.recordAlive(ids: ["talking", "ringing"], at: t(108))
            try store.recordAlive(ids: ["talking"], at: t(113))
            #expect(try store.lastKnownAlive(id: "talking") == t(113))
            try store.recordCallStarted(id: "done", direction: .outgoing, peerURI: "centrale", peerName: nil, at: t(120))
            try store.recordEnded(id: "done", outcome: .connectionLost, failureReason: "connection lost", at: t(140))
            // A heartbeat for an ended call changes nothing.
            try store.recordAlive(ids: ["done"], at: t(150))
            try store.recordCallStarted(id: "answeredOnly", direction: .outgoing, peerURI: "centrale", peerName: nil, at: t(160))
            try store.recordAnswered(id: "answeredOnly", at: t(161))
            try store.close()
        }
        let reopened = try BeeldzorgStore(path: dir.dbPath, options: StoreOptions(now: { t(900) }))
        let talking = try #require(try reopened.callRecord(id: "talking"))
        #expect(talking.outcome == .interrupted)
        #expect(talking.answeredAt == t(103))
        #expect(talking.endedAt == t(113))
        #expect(try reopened.callRecord(id: "ringing")?.endedAt == t(108))
        #expect(try reopened.callRecord(id: "answeredOnly")?.endedAt == t(161))
        let done = try #require(try reopened.callRecord(id: "done"))
        #expect(done.outcome == .connectionLost)
        #expect(done.endedAt == t(140))
    }

    @Test func callbackRequestsAndOutboxRetry() throws {
        let store = try BeeldzorgStore.inMemory()
        try store.recordCallStarted(id: "c", direction: .outgoing, peerURI: "sip:post@h", peerName: nil, at: t(0))
        try store.recordEnded(id: "c", outcome: .unreachable, failureReason: "no post reachable", at: t(30))
        let request = try store.enqueueCallbackRequest(id: "cb", reason: "nobody answered", callID: "c", at: t(31))
        #expect(try store.callbackRequests() == [request])

        #expect(try store.dueOutboxItems(at: t(31)).map(\.id) == ["c", "cb"])
        try store.outboxAttemptFailed(id: "cb", nextAttemptAt: t(91))
        #expect(try store.dueOutboxItems(at: t(60)).map(\.id) == ["c"])
        let retried = try #require(try store.dueOutboxItems(at: t(91)).first { $0.id == "cb" })
        #expect(retried.attempts == 1)
        let payload = try #require(try JSONSerialization.jsonObject(with: retried.payload) as? [String: Any])
        #expect(payload["callID"] as? String == "c")

        try store.outboxDelivered(id: "cb")
        #expect(try store.callbackRequests().isEmpty)
        #expect(try store.callbackRequests(includeDelivered: true).map(\.delivered) == [true])
        #expect(throws: StoreError.unknownOutboxItem(id: "cb")) { try store.outboxDelivered(id: "cb") }

        let other = try store.enqueueCallbackRequest(reason: "second", callID: nil, at: t(40))
        try store.markCallbackDelivered(id: other.id)
        #expect(throws: StoreError.unknownCallbackRequest(id: "x")) { try store.markCallbackDelivered(id: "x") }
    }

    @Test func settings() throws {
        let store = try BeeldzorgStore.inMemory()
        #expect(try store.setting("volume") == nil)
        try store.setSetting("volume", to: "7")
        try store.setSetting("volume", to: "8")
        try store.setSetting("etag", to: "\"abc\"")
        #expect(try store.allSettings() == ["volume": "8", "etag": "\"abc\""])
        try store.setSetting("volume", to: nil)
        #expect(try store.setting("volume") == nil)
    }
}
