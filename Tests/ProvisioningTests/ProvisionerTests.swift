import Foundation
import Logging
import Provisioning
import Store
import Testing

/// Provisioning against a real HTTPS server (Python's http.server with ssl) on 127.0.0.1.
@Suite("Provisioner over HTTPS", .serialized)
struct ProvisionerTests {
    static let document = """
        {
          "schemaVersion": 1,
          "contacts": [
            {"id": "post-1", "displayName": "Centrale", "sipURI": "sips:post1@centrale.example", "role": "centralePost", "sortOrder": 0},
            {"id": "fam-anna", "displayName": "Zus Anna", "sipURI": "sip:anna@family.example", "role": "family", "autoAnswerSeconds": 10, "photoRef": "anna.jpg", "sortOrder": 1}
          ],
          "settings": {"volume": "7"}
        }
        """

    static let expectedContacts = [
        Contact(id: "post-1", displayName: "Centrale", sipURI: "sips:post1@centrale.example", role: .centralePost, sortOrder: 0),
        Contact(id: "fam-anna", displayName: "Zus Anna", sipURI: "sip:anna@family.example", role: .family, autoAnswerSeconds: 10, photoRef: "anna.jpg", sortOrder: 1),
    ]

    /// A store already provisioned from /doc, the server, and a provisioner for `path`.
    struct Fixture {
        let server: TestServer
        let store: BeeldzorgStore

        init() async throws {
            server = try TestServer()
            try server.serve(ProvisionerTests.document)
            store = try BeeldzorgStore.inMemory()
            let outcome = try await sync(path: "/doc")
            guard case .applied = outcome else { throw TestServer.Failure("setup sync: \(outcome)") }
        }

        func provisioner(
            path: String, caFile: String? = nil, token: String = TestServer.token,
            timeout: Duration = .seconds(5), maxBytes: Int = 64 * 1024
        ) throws -> Provisioner {
            try Provisioner(
                source: ProvisioningSource(
                    url: server.url(path), bearerToken: token, pinnedCAFile: caFile ?? server.pki.caFile,
                    timeout: timeout, maxDocumentBytes: maxBytes),
                store: store, logger: Logger(label: "test"))
        }

        func sync(
            path: String, caFile: String? = nil, token: String = TestServer.token,
            timeout: Duration = .seconds(5)
        ) async throws -> ProvisioningOutcome {
            let provisioner = try provisioner(path: path, caFile: caFile, token: token, timeout: timeout)
            let outcome = await provisioner.sync()
            try await provisioner.shutdown()
            return outcome
        }

        /// The previous document is still in place, untouched.
        func expectPreviousDataKept() throws {
            #expect(try store.contacts() == ProvisionerTests.expectedContacts)
            #expect(try store.provisionedSettings() == ["volume": "7"])
        }
    }

    @Test func okThenNotModifiedThenChanged() async throws {
        let f = try await Fixture()
        defer { f.server.stop() }
        try f.expectPreviousDataKept()
        let state = try f.store.provisioningState()
        #expect(state.etag?.hasPrefix("\"") == true)
        #expect(state.lastResult == "applied: 2 contacts, 1 settings")

        // Same document: the server sees our If-None-Match and answers 304.
        #expect(try await f.sync(path: "/doc") == .notModified)
        #expect(try f.store.provisioningState().lastResult == "not modified")

        try f.server.serve(#"{"schemaVersion": 1, "contacts": [], "settings": {"language": "nl"}}"#)
        guard case .applied(let etag, 0, 1) = try await f.sync(path: "/doc") else {
            Issue.record("expected the changed document to be applied")
            return
        }
        #expect(etag != state.etag)
        #expect(try f.store.contacts().isEmpty)
        #expect(try f.store.provisionedSettings() == ["language": "nl"])
    }

    @Test func serverError() async throws {
        let f = try await Fixture()
        defer { f.server.stop() }
        #expect(try await f.sync(path: "/status500") == .failed(reason: "HTTP 500 Internal Server Error"))
        try f.expectPreviousDataKept()
        #expect(try f.store.provisioningState().lastResult == "failed: HTTP 500 Internal Server Error")
    }

    @Test func wrongToken() async throws {
        let f = try await Fixture()
        defer { f.server.stop() }
        #expect(try await f.sync(path: "/doc", token: "wrong") == .failed(reason: "HTTP 401 Unauthorized"))
        try f.expectPreviousDataKept()
    }

    @Test func malformedJSON() async throws {
        let f = try await Fixture()
        defer { f.server.stop() }
        try f.server.serve(#"{"schemaVersion": 1, "contacts": [}"#)
        let outcome = try await f.sync(path: "/doc")
        guard case .rejected(let reason) = outcome else {
            Issue.record("expected rejection, got \(outcome)")
            return
        }
        #expect(reason.hasPrefix("malformed JSON"))
        try f.expectPreviousDataKept()
    }

    @Test func schemaViolation() async throws {
        let f = try await Fixture()
        defer { f.server.stop() }
        try f.server.serve(
            #"{"schemaVersion": 1, "contacts": [{"id": "x", "displayName": "X", "sipURI": "sip:x@h", "role": "boss", "sortOrder": 1}]}"#)
        #expect(
            try await f.sync(path: "/doc")
                == .rejected(reason: "/contacts/0/role: must be one of centralePost, family, professional"))
        try f.expectPreviousDataKept()
    }

    @Test func truncatedBody() async throws {
        let f = try await Fixture()
        defer { f.server.stop() }
        let outcome = try await f.sync(path: "/truncated")
        guard case .failed = outcome else {
            Issue.record("expected failure, got \(outcome)")
            return
        }
        try f.expectPreviousDataKept()
    }

    @Test(arguments: ["/oversized", "/oversized-stream"])
    func oversizedBody(_ path: String) async throws {
        let f = try await Fixture()
        defer { f.server.stop() }
        let outcome = try await f.sync(path: path)
        guard case .rejected(let reason) = outcome else {
            Issue.record("expected rejection, got \(outcome)")
            return
        }
        #expect(reason.hasPrefix("document too large"))
        try f.expectPreviousDataKept()
    }

    @Test func certificateFromAnotherCA() async throws {
        let f = try await Fixture()
        defer { f.server.stop() }
        let outcome = try await f.sync(path: "/doc", caFile: f.server.pki.otherCAFile)
        guard case .failed(let reason) = outcome else {
            Issue.record("expected TLS failure, got \(outcome)")
            return
        }
        #expect(reason.hasPrefix("TLS"), "\(reason)")
        try f.expectPreviousDataKept()
    }

    @Test(arguments: ["/slow", "/slow-body"])
    func slowServerTimesOut(_ path: String) async throws {
        let f = try await Fixture()
        defer { f.server.stop() }
        let clock = ContinuousClock()
        let start = clock.now
        let outcome = try await f.sync(path: path, timeout: .seconds(1))
        let elapsed = start.duration(to: clock.now)
        guard case .failed = outcome else {
            Issue.record("expected timeout, got \(outcome)")
            return
        }
        // The server would take 5 s (/slow) or 10 s (/slow-body); we gave up after about 1 s.
        #expect(elapsed < .seconds(4), "took \(elapsed)")
        try f.expectPreviousDataKept()
    }

    @Test func refusesPlainHTTP() throws {
        let store = try BeeldzorgStore.inMemory()
        #expect(throws: ProvisioningRejection.self) {
            try Provisioner(
                source: ProvisioningSource(url: "http://127.0.0.1:1/doc", bearerToken: "t", pinnedCAFile: nil),
                store: store, logger: Logger(label: "test"))
        }
    }
}
