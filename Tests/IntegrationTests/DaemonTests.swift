import Control
import Foundation
import Testing

/// beeldzorgd as a whole: the built binary, its FIFO button, the demo centrale on loopback,
/// real SIP over UDP, real SRTP media with Opus and VP8, a real SQLite file, beeldzorgctl.
@Suite(.serialized) struct DaemonTests {
    @Test func aPressReachesAPostAndALongPressHangsUp() async throws {
        let daemon = try DaemonUnderTest()
        try daemon.start()
        try await daemon.waitUntilReady()
        #expect(try daemon.status().call.phase == "idle")

        try daemon.button("press")
        try await daemon.waitForPhase("inCall", timeout: .seconds(20))

        // Media flows both ways: the centrale echoes our SRTP back and we decode it.
        try await daemon.waitFor("decoded video and audio", timeout: .seconds(15)) {
            guard let media = try daemon.status().media else { return false }
            return media.videoFramesDecoded >= 10 && media.audioPacketsReceived >= 25
        }
        let media = try #require(try daemon.status().media)
        #expect(media.authenticationFailures == 0)

        // Nervous short presses during the call change nothing.
        for _ in 0..<3 { try daemon.button("press") }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try daemon.status().call.phase == "inCall")

        try daemon.button("long")
        try await daemon.waitFor("the call to end", timeout: .seconds(10)) {
            let phase = try daemon.status().call.phase
            return phase == "ending" || phase == "idle"
        }

        let calls = try runCtl(["calls", "--json", "--database", daemon.databasePath], socket: nil)
        #expect(calls.status == 0, "\(calls.error)")
        let records = try JSONSerialization.jsonObject(with: Data(calls.output.utf8)) as? [[String: Any]]
        let last = try #require(records?.first)
        #expect(last["direction"] as? String == "outgoing")
        #expect(last["outcome"] as? String == "answered")
        #expect(await daemon.stop() == 0)
    }

    @Test func aContactCallsInAndAPressAnswers() async throws {
        let daemon = try DaemonUnderTest()
        try daemon.start()
        try await daemon.waitUntilReady()

        let callIn = try runCtl(["demo", "call-in", "--from", "sip:marieke@127.0.0.1"], socket: daemon.socketPath)
        #expect(callIn.status == 0, "\(callIn.error)")
        try await daemon.waitForPhase("incomingRinging")
        #expect(try daemon.status().call.peer == "Marieke")

        try daemon.button("press")
        try await daemon.waitForPhase("inCall")
        // The centrale re-encrypts what it echoes with its own key: SRTP both ways, decoded.
        try await daemon.waitFor("decoded media on the incoming call", timeout: .seconds(15)) {
            guard let media = try daemon.status().media else { return false }
            return media.videoFramesDecoded >= 10 && media.audioPacketsReceived >= 25
        }
        #expect(try daemon.status().media?.authenticationFailures == 0)
        try daemon.button("long")
        try await daemon.waitFor("the call to end", timeout: .seconds(10)) {
            try daemon.status().call.phase != "inCall"
        }
        #expect(await daemon.stop() == 0)
    }

    @Test func anUnknownCallerIsRejectedAndLogged() async throws {
        let daemon = try DaemonUnderTest()
        try daemon.start()
        try await daemon.waitUntilReady()

        let callIn = try runCtl(["demo", "call-in", "--from", "sip:onbekend@127.0.0.1"], socket: daemon.socketPath)
        #expect(callIn.status == 0, "\(callIn.error)")
        try await daemon.waitFor("the rejection in the call log", timeout: .seconds(10)) {
            let records = try daemon.client.send(ControlRequest(cmd: .calls)).result
            return String(decoding: records ?? Data(), as: UTF8.self).contains("notAContact")
        }
        #expect(try daemon.status().call.phase == "idle")
        #expect(await daemon.stop() == 0)
    }

    @Test func statusSpeaksJSONAndTextAndBadRequestsDoNotHurt() async throws {
        let daemon = try DaemonUnderTest()
        try daemon.start()
        try await daemon.waitUntilReady()

        let json = try runCtl(["status", "--json"], socket: daemon.socketPath)
        #expect(json.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        #expect((object["daemon"] as? [String: Any])?["pid"] as? Int == Int(daemon.pid))
        #expect((object["call"] as? [String: Any])?["phase"] as? String == "idle")

        let text = try runCtl(["status"], socket: daemon.socketPath)
        #expect(text.output.contains("Call          idle"))
        #expect(text.output.contains("Store         ok"))

        // Garbage, a wrong version and an oversized line each get an error answer…
        let garbage = try ControlResponse.decode(daemon.client.exchange(Data("hello?\n".utf8)))
        #expect(garbage.error?.code == .malformed)
        let version = try ControlResponse.decode(daemon.client.exchange(Data("{\"v\":9,\"cmd\":\"status\"}\n".utf8)))
        #expect(version.error?.code == .unsupportedVersion)
        let huge = try ControlResponse.decode(daemon.client.exchange(Data(repeating: 0x41, count: 100_000) + Data([0x0A])))
        #expect(huge.error?.code == .tooLarge)
        // …and a silent client is dropped without blocking anyone else.
        let silent = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(silent) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(daemon.socketPath.utf8) + [0]) }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(silent, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(try daemon.status().call.phase == "idle")
        #expect(daemon.isRunning)
        #expect(await daemon.stop() == 0)
    }

    @Test func withNoDaemonTheCLISaysSoWithItsExitStatus() throws {
        let result = try runCtl(["status"], socket: "/tmp/bz-nothing-\(getpid()).sock")
        #expect(result.status == 3)
        #expect(result.error.contains("beeldzorgd is not running"))
        // …and still says what it can know on its own.
        #expect(result.output.contains("configuration"))
        #expect(result.output.contains("store"))
        let json = try runCtl(["status", "--json"], socket: "/tmp/bz-nothing-\(getpid()).sock")
        #expect(json.status == 3)
        #expect(json.output.contains("\"daemon-not-running\""))
    }

    @Test func aBrokenConfigurationStopsTheDaemonNamingTheKey() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bz-cfg-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("bad.yaml").path
        try "account:\n  user: t\n  domain: d\ntransport: udp\nsrtp: off\ncentrale:\n  policy: everyone\n  posts:\n    - id: a\n      uri: sip:a@h\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = Binaries.daemon
        process.arguments = ["--config", path]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 78)
        #expect(message.contains("'centrale.policy' (line 7)"))
        #expect(message.contains("ring_all, hunt"))
    }
}
