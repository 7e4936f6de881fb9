import Foundation
import Logging
import Provisioning
import Store
import Testing

/// The upload outbox against a real HTTPS server (Python's http.server with ssl) on
/// 127.0.0.1, which logs every POST it receives (status, path, Idempotency-Key, body id).
@Suite("Outbox uploader over HTTPS", .serialized)
struct OutboxUploaderTests {
    /// Short backoff so that retries happen within a test; the shape is the production one.
    static let quickBackoff = UploadBackoff(initial: .milliseconds(100), maximum: .milliseconds(400))

    static func uploader(
        _ server: TestServer, store: BeeldzorgStore, token: String = TestServer.token, caFile: String? = nil,
        backoff: UploadBackoff = quickBackoff
    ) throws -> OutboxUploader {
        try OutboxUploader(
            target: UploadTarget(
                baseURL: server.url("/api/v1/tablets/t1"), bearerToken: token,
                pinnedCAFile: caFile ?? server.pki.caFile, timeout: .seconds(5)),
            store: store, logger: Logger(label: "test"), backoff: backoff)
    }

    /// An ended call: its record is queued in the outbox. Returns its id.
    @discardableResult
    static func endedCall(_ store: BeeldzorgStore, outcome: CallOutcome = .answered) throws -> String {
        let id = UUID().uuidString.lowercased()
        // Ended just now: the record is due at once.
        let start = Date().addingTimeInterval(-2)
        try store.recordCallStarted(id: id, direction: .outgoing, peerURI: "sip:post1@centrale.example", peerName: "centrale", at: start)
        try store.recordEnded(id: id, outcome: outcome, postsTried: ["sip:post1@centrale.example"], failureReason: nil, at: start.addingTimeInterval(1))
        return id
    }

    static func callback(_ store: BeeldzorgStore) throws -> String {
        try store.enqueueCallbackRequest(reason: "nobody answered", callID: nil, at: Date()).id
    }

    /// Polls `condition` until it holds; fails the test with `what` at the deadline.
    static func waitUntil(
        _ what: String, timeout: Duration = .seconds(20), _ condition: () throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting for \(what)")
        throw TestServer.Failure("timed out waiting for \(what)")
    }

    static func tempStorePath() throws -> String {
        let directory = NSTemporaryDirectory() + "beeldzorg-outbox-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory + "/store.sqlite"
    }

    @Test func serverDownForAWhileThenUpEveryRecordArrivesExactlyOnce() async throws {
        let server = try TestServer()
        defer { server.stop() }
        server.takeDown()
        let store = try BeeldzorgStore.inMemory()
        var calls: [String] = []
        for _ in 0..<3 { calls.append(try Self.endedCall(store)) }
        let callbacks = [try Self.callback(store), try Self.callback(store)]

        let uploader = try Self.uploader(server, store: store)
        let running = Task { await uploader.run(every: .seconds(30)) }

        // Down: every item is tried, fails, and stays.
        try await Self.waitUntil("two failed attempts per item") {
            try store.outboxItems().allSatisfy { $0.attempts >= 2 }
        }
        #expect(try store.outboxItems().count == 5)

        try server.bringUp()
        try await Self.waitUntil("an empty outbox") { try store.outboxItems().isEmpty }
        running.cancel()
        await running.value
        try await uploader.shutdown()

        let posts = server.posts
        // Each id arrived once, at the right endpoint, with its id as the Idempotency-Key.
        #expect(posts.count == 5, "\(posts)")
        #expect(posts.allSatisfy { $0.status == 201 && $0.idempotencyKey == $0.bodyID })
        #expect(Set(posts.filter { $0.path == "/api/v1/tablets/t1/calls" }.map(\.bodyID)) == Set(calls))
        #expect(Set(posts.filter { $0.path == "/api/v1/tablets/t1/callback-requests" }.map(\.bodyID)) == Set(callbacks))
        for id in calls { #expect(try store.callRecord(id: id)?.uploadState == .uploaded) }
        #expect(try store.callbackRequests().isEmpty)
        #expect(try store.callbackRequests(includeDelivered: true).count == 2)
    }

    @Test func serverErrorIsRetriedUntilAccepted() async throws {
        let server = try TestServer()
        defer { server.stop() }
        try server.failNextPosts(2)
        let store = try BeeldzorgStore.inMemory()
        let id = try Self.endedCall(store)
        let uploader = try Self.uploader(server, store: store)
        let running = Task { await uploader.run(every: .seconds(30)) }
        try await Self.waitUntil("an empty outbox") { try store.outboxItems().isEmpty }
        running.cancel()
        await running.value
        try await uploader.shutdown()
        #expect(server.posts.map(\.status) == [500, 500, 201])
        #expect(server.posts.allSatisfy { $0.bodyID == id && $0.idempotencyKey == id })
        #expect(try store.callRecord(id: id)?.uploadState == .uploaded)
    }

    @Test func aNewUploaderOnTheSameStoreFileContinues() async throws {
        let server = try TestServer()
        defer { server.stop() }
        let path = try Self.tempStorePath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }

        var store = try BeeldzorgStore(path: path)
        let first = try Self.endedCall(store)
        var uploader = try Self.uploader(server, store: store)
        #expect(await uploader.uploadDue().delivered == [first])

        server.takeDown()
        let second = try Self.endedCall(store)
        let callbackID = try Self.callback(store)
        let pass = await uploader.uploadDue()
        #expect(Set(pass.failed) == [second, callbackID])
        try await uploader.shutdown()
        try store.close()

        // "Restart": a new store on the same file, a new uploader, the server back.
        store = try BeeldzorgStore(path: path)
        #expect(Set(try store.outboxItems().map(\.id)) == [second, callbackID])
        try server.bringUp()
        uploader = try Self.uploader(server, store: store)
        let running = Task { await uploader.run(every: .seconds(30)) }
        try await Self.waitUntil("an empty outbox") { try store.outboxItems().isEmpty }
        running.cancel()
        await running.value
        try await uploader.shutdown()
        try store.close()

        let accepted = server.posts.filter { $0.status == 201 }.map(\.bodyID)
        #expect(accepted.sorted() == [first, second, callbackID].sorted())
        #expect(server.posts.count == 3, "the first record was not sent again: \(server.posts)")
    }

    @Test func theTokenIsSentAndAWrongOneIsAKeptRejection() async throws {
        let server = try TestServer()
        defer { server.stop() }
        let store = try BeeldzorgStore.inMemory()
        let id = try Self.endedCall(store)
        let slowBackoff = UploadBackoff(initial: .seconds(5), maximum: .seconds(900))

        let wrong = try Self.uploader(server, store: store, token: "wrong", backoff: slowBackoff)
        let before = Date()
        let pass = await wrong.uploadDue()
        try await wrong.shutdown()
        #expect(pass.rejected == [id])
        #expect(server.posts.map(\.status) == [401])
        // Kept (never dropped), backed off to the maximum.
        let item = try #require(try store.outboxItems().first)
        #expect(item.id == id && item.attempts == 1)
        #expect(item.nextAttemptAt.timeIntervalSince(before) >= 899)

        // The right token: the server (which checks it) accepts. Make the item due first.
        try store.outboxAttemptFailed(id: id, nextAttemptAt: Date())
        let right = try Self.uploader(server, store: store, backoff: slowBackoff)
        #expect(await right.uploadDue().delivered == [id])
        try await right.shutdown()
        #expect(server.posts.map(\.status) == [401, 201])
    }

    @Test func aClientErrorLikeUnprocessableIsKeptAndBackedOffToTheMaximum() async throws {
        let server = try TestServer()
        defer { server.stop() }
        try server.answerPosts(with: 422)
        let store = try BeeldzorgStore.inMemory()
        let id = try Self.callback(store)
        let uploader = try Self.uploader(server, store: store, backoff: UploadBackoff(initial: .seconds(5), maximum: .seconds(900)))
        let before = Date()
        #expect(await uploader.uploadDue().rejected == [id])
        // 429 (too many requests) is not a rejection: an ordinary, short backoff.
        try server.answerPosts(with: 429)
        try store.outboxAttemptFailed(id: id, nextAttemptAt: Date())
        let pass = await uploader.uploadDue()
        try await uploader.shutdown()
        #expect(pass.failed == [id] && pass.rejected.isEmpty)
        let item = try #require(try store.outboxItems().first)
        #expect(item.attempts == 3)
        // Third failure: at most 5 s · 2² = 20 s away, not the 15 min of a rejection.
        #expect(item.nextAttemptAt.timeIntervalSince(before) < 60)
        #expect(server.posts.map(\.status) == [422, 429])
    }

    @Test func aServerWithAnotherCAGetsNothing() async throws {
        let server = try TestServer()
        defer { server.stop() }
        let store = try BeeldzorgStore.inMemory()
        let id = try Self.endedCall(store)
        let uploader = try Self.uploader(server, store: store, caFile: server.pki.otherCAFile)
        let pass = await uploader.uploadDue()
        try await uploader.shutdown()
        #expect(pass.failed == [id])
        #expect(pass.lastError?.hasPrefix("TLS") == true, "\(pass.lastError ?? "")")
        #expect(server.posts.isEmpty)
        #expect(try store.outboxItems().map(\.id) == [id])
        #expect(try store.callRecord(id: id)?.uploadState == .pending)
    }

    @Test func aKickSendsANewRecordWithoutWaitingForTheInterval() async throws {
        let server = try TestServer()
        defer { server.stop() }
        let store = try BeeldzorgStore.inMemory()
        let uploader = try Self.uploader(server, store: store)
        let running = Task { await uploader.run(every: .seconds(3600)) }
        // Let the first (empty) pass happen, so only the kick can start the next one.
        try await Self.waitUntil("the first pass") { uploader.lastPass != nil }
        let id = try Self.endedCall(store)
        uploader.kick()
        try await Self.waitUntil("the kicked upload", timeout: .seconds(15)) { server.posts.map(\.bodyID) == [id] }
        running.cancel()
        await running.value
        try await uploader.shutdown()
        #expect(try store.outboxItems().isEmpty)
    }

    @Test func backoffDoublesToItsMaximumWithJitter() {
        let backoff = UploadBackoff.default
        #expect((1...10).map { backoff.ceiling(afterAttempts: $0) }
            == [5, 10, 20, 40, 80, 160, 320, 640, 900, 900].map { Duration.seconds($0) })
        #expect(backoff.ceiling(afterAttempts: 10_000) == .seconds(900))
        var generator = SystemRandomNumberGenerator()
        for attempts in 1...12 {
            let delay = backoff.delay(afterAttempts: attempts, using: &generator)
            let ceiling = backoff.ceiling(afterAttempts: attempts)
            #expect(delay <= ceiling && delay >= ceiling / 2)
        }
    }

    @Test func uploadEndpointsFollowTheProvisioningURL() {
        let base = UploadTarget.baseURL(derivedFrom: "https://beheer.zorg.example/api/v1/tablets/tablet-0042/config?x=1")
        #expect(base == "https://beheer.zorg.example/api/v1/tablets/tablet-0042")
        let target = UploadTarget(baseURL: base + "/", bearerToken: "t", pinnedCAFile: nil)
        #expect(target.url(for: .callRecord) == "https://beheer.zorg.example/api/v1/tablets/tablet-0042/calls")
        #expect(target.url(for: .callbackRequest) == "https://beheer.zorg.example/api/v1/tablets/tablet-0042/callback-requests")
    }

    @Test func refusesPlainHTTP() throws {
        let store = try BeeldzorgStore.inMemory()
        #expect(throws: ProvisioningRejection.self) {
            try OutboxUploader(
                target: UploadTarget(baseURL: "http://127.0.0.1:1/api", bearerToken: "t", pinnedCAFile: nil),
                store: store, logger: Logger(label: "test"))
        }
    }
}
