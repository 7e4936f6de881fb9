import Foundation
import Testing

/// What beeldzorgd's log says about its SIP side: a technician reads these lines.
@Suite(.serialized) struct DaemonLogTests {
    /// With `listen_host: 0.0.0.0` the "user agent listening" line names the address bound
    /// (the wildcard and its port) and the configured transport, not the account's domain.
    @Test func theListeningLineNamesTheBoundAddressAndTransport() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bz-log-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let post = try await ReinviteTests.freeUDPPort()
        let daemon = try ReinviteDaemonTests.Daemon(
            directory: directory, post: "sip:centrale@127.0.0.1:\(post)", listenHost: "0.0.0.0",
            domain: "zorg.example", transport: "tcp")
        defer { daemon.stop() }
        try await daemon.waitFor("the listening line") { daemon.log.contains(": user agent listening") }
        let line = try #require(daemon.log.split(whereSeparator: \.isNewline).first { $0.contains(": user agent listening") })
        #expect(line.contains("address=0.0.0.0:"), "\(line)")
        #expect(line.contains("transport=tcp"), "\(line)")
        #expect(!line.contains("zorg.example"), "\(line)")
    }
}
