import Foundation
import TestSupport
import Testing

/// The built beeldzorgd sending health reports to the demo organisation server
/// (`scripts/org-server.py`: Python's http.server with ssl, its own CA pinned by the daemon,
/// every report validated against `docs/health.schema.json` with python3-jsonschema).
/// The button's stand-in is a FIFO: removing it is the field's "button unplugged".
@Suite("Health reports through the daemon", .serialized)
struct HealthReportTests {
    static let token = "health-token-2468"
    static let displayName = "Mevrouw Jansen"

    final class OrganisationServer {
        let directory: String
        private(set) var port = 0
        private var process: Process?

        var caFile: String { directory + "/ca.pem" }
        var tokenFile: String { directory + "/token" }

        init() throws {
            directory = NSTemporaryDirectory() + "bz-health-" + UUID().uuidString.prefix(8)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            _ = try TestPKI(directory: directory)
            try (HealthReportTests.token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
            chmod(tokenFile, 0o600)
            try bringUp()
        }

        /// Starts the server (again on the same port after ``takeDown()``).
        func bringUp() throws {
            let script = Binaries.packageRoot.appendingPathComponent("scripts/org-server.py").path
            let started = try launchPortPrintingServer([
                script, "--data", directory + "/data", "--cert", directory + "/server.pem",
                "--key", directory + "/server.key", "--token-file", tokenFile, "--port", String(port),
            ])
            (process, port) = (started.process, started.port)
        }

        func takeDown() {
            if let process { killTestServer(process) }
            process = nil
        }

        struct Entry {
            var valid: Bool
            var error: String?
            var raw: String
            var document: [String: Any]
            var reportID: String { document["reportID"] as? String ?? "" }
            var reason: String { document["reason"] as? String ?? "" }
            var faultKeys: [String] {
                (document["faults"] as? [[String: Any]] ?? []).map { fault in
                    [fault["code"] as? String, fault["subject"] as? String].compactMap { $0 }.joined(separator: ":")
                }
            }
        }

        /// Every report received, in arrival order.
        var received: [Entry] {
            guard let text = try? String(contentsOfFile: directory + "/data/health.jsonl", encoding: .utf8) else { return [] }
            return text.split(separator: "\n").compactMap { line in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
                return Entry(valid: object["valid"] as? Bool ?? false, error: object["error"] as? String, raw: String(line),
                             document: object["document"] as? [String: Any] ?? [:])
            }
        }

        func stop() {
            takeDown()
            try? FileManager.default.removeItem(atPath: directory)
        }

        deinit { stop() }
    }

    static func daemon(_ server: OrganisationServer) throws -> DaemonUnderTest {
        try DaemonUnderTest(extraConfig: """
            provisioning:
              url: https://127.0.0.1:\(server.port)/api/v1/tablets/t1/config
              token_file: \(server.tokenFile)
              ca_file: \(server.caFile)
              interval_minutes: 60
              health_interval_seconds: 2
            """, displayName: displayName)
    }

    static func expectValid(_ entries: [OrganisationServer.Entry]) {
        for entry in entries {
            #expect(entry.valid, "report not valid against docs/health.schema.json: \(entry.error ?? "?")")
        }
    }

    @Test func aFaultAndItsClearingArriveWithinTheIntervalAndNothingPersonalLeaves() async throws {
        let server = try OrganisationServer()
        defer { server.stop() }
        let daemon = try Self.daemon(server)
        defer { Task { await daemon.stop() } }
        try daemon.start()
        try await daemon.waitUntilReady()
        try await daemon.waitFor("the first health report", timeout: .seconds(20)) {
            server.received.contains { $0.reason == "start" }
        }

        // A call with the demo's family contact, so the last call has a name and URI to leak.
        let callIn = try runCtl(["demo", "call-in", "--from", "sip:marieke@127.0.0.1"], socket: daemon.socketPath)
        #expect(callIn.status == 0, "\(callIn.error)")
        try await daemon.waitForPhase("incomingRinging")
        try daemon.button("press")
        try await daemon.waitForPhase("inCall")
        try daemon.button("long")
        try await daemon.waitForPhase("idle")
        try await daemon.waitFor("a report with the last call", timeout: .seconds(10)) {
            server.received.contains { $0.document["lastCall"] != nil }
        }

        // The button is unplugged: a report carrying it arrives within the interval (2 s; the
        // deadline leaves room for a loaded test machine).
        try FileManager.default.removeItem(atPath: daemon.buttonFIFO)
        try await daemon.waitFor("a report with the button fault", timeout: .seconds(6)) {
            server.received.contains { $0.faultKeys.contains("device:button") }
        }
        let faulty = try #require(server.received.first { $0.faultKeys.contains("device:button") })
        #expect(faulty.reason == "faultsChanged")

        // Plugged in again: the clearing arrives too.
        #expect(mkfifo(daemon.buttonFIFO, 0o600) == 0)
        try await daemon.waitFor("a report without the button fault", timeout: .seconds(6)) {
            let entries = server.received
            guard let index = entries.lastIndex(where: { $0.faultKeys.contains("device:button") }) else { return false }
            return entries[(index + 1)...].contains { $0.reason == "faultsChanged" && !$0.faultKeys.contains("device:button") }
        }

        let entries = server.received
        Self.expectValid(entries)
        for entry in entries {
            for personal in [Self.displayName, "Marieke", "marieke", "sip:marieke"] {
                #expect(!entry.raw.contains(personal), "\(personal) in a health report: \(entry.raw)")
            }
        }
        let last = try #require(entries.last { $0.document["lastCall"] != nil })
        let lastCall = try #require(last.document["lastCall"] as? [String: Any])
        #expect(lastCall["direction"] as? String == "incoming")
        #expect(lastCall["peer"] == nil)
    }

    @Test func reportsQueuedOfflineArriveNewestFirstWhenTheServerReturns() async throws {
        let server = try OrganisationServer()
        defer { server.stop() }
        let daemon = try Self.daemon(server)
        defer { Task { await daemon.stop() } }
        try daemon.start()
        try await daemon.waitUntilReady()
        try await daemon.waitFor("the first health report", timeout: .seconds(20)) { !server.received.isEmpty }

        // The server goes away; a fault appears meanwhile; reports pile up in the store.
        server.takeDown()
        let before = server.received.count
        try FileManager.default.removeItem(atPath: daemon.buttonFIFO)
        var queued: [String] = []
        try await daemon.waitFor("three reports queued in the store, one with the fault", timeout: .seconds(20)) {
            queued = Self.storedQueue(daemon.databasePath)
            return queued.count >= 3
        }
        #expect(server.received.count == before)

        try server.bringUp()
        try await daemon.waitFor("the queued reports at the server", timeout: .seconds(30)) {
            let ids = Set(server.received.map(\.reportID))
            return queued.allSatisfy(ids.contains)
        }
        let afterwards = Array(server.received.dropFirst(before))
        Self.expectValid(afterwards)
        // The backlog arrives newest first: the reverse of the queue's order (oldest first).
        let order = afterwards.map(\.reportID).filter(queued.contains)
        #expect(order == queued.reversed(), "arrival \(order), queue \(queued)")
        // Nothing older than the newest state comes first.
        #expect(afterwards.first.map { queued.last == $0.reportID || !queued.contains($0.reportID) } == true)
        #expect(afterwards.contains { $0.faultKeys.contains("device:button") })
    }

    /// The report ids of the daemon's unsent queue, oldest first, read with the sqlite3 tool.
    static func storedQueue(_ database: String) -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        process.arguments = ["-readonly", database, "SELECT value FROM setting WHERE key = 'health.queue'"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return [] }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard let array = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else { return [] }
        return array.compactMap { $0["reportID"] as? String }
    }
}
