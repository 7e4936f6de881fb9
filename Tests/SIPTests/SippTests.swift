import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import SIP

/// The user agent against sipp (Debian `sip-tester`), software nobody on this team wrote.
/// sipp runs on 127.0.0.1 with explicit ports and is stopped by its PID. Missing sipp is a
/// test failure, not a skip.
@Suite(.serialized) struct SippTests {
    /// A running sipp process.
    final class Sipp {
        let process: Process
        let directory: URL
        let stderrURL: URL

        init(arguments: [String]) throws {
            let path = try #require(
                ["/usr/bin/sipp", "/usr/local/bin/sipp"].first { FileManager.default.isExecutableFile(atPath: $0) },
                "sipp is not installed: apt-get install sip-tester")
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("sipp-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            stderrURL = directory.appendingPathComponent("stderr.log")
            _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
            process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments + ["-nostdin", "-i", "127.0.0.1", "-timeout", "20s", "-timeout_error"]
            process.currentDirectoryURL = directory  // sipp may write logs to its working directory
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: stderrURL)
            try process.run()
        }

        /// Waits for sipp to exit by itself; stops it by PID if it has not after `timeout`.
        func exitStatus(timeout: Duration = .seconds(25)) async throws -> Int32 {
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: timeout)
            while process.isRunning, clock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            if process.isRunning { stop() }
            process.waitUntilExit()
            return process.terminationStatus
        }

        var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

        func stop() {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }

        deinit {
            stop()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// A UDP port that was free a moment ago.
    private func freePort() async throws -> Int {
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }

    /// Waits until sipp's UDP socket is bound (it answers nothing before its scenario, so poll
    /// /proc/net/udp for the port).
    private func waitUntilBound(_ port: Int) async throws {
        let hex = String(format: ":%04X ", port)
        for _ in 0..<500 {
            if let table = try? String(contentsOfFile: "/proc/net/udp", encoding: .utf8), table.contains(hex) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TimedOut(what: "sipp to bind port \(port)")
    }

    @Test func sippAnswersOurInvite() async throws {
        let sipPort = try await freePort()
        let mediaPort = try await freePort()
        let sipp = try Sipp(arguments: ["-sn", "uas", "-p", "\(sipPort)", "-mp", "\(mediaPort)", "-m", "1"])
        defer { sipp.stop() }
        try await waitUntilBound(sipPort)

        let (agent, events, _) = try await makeAgent(t1: .milliseconds(500))
        let offer = agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer()
        let call = await agent.invite(to: "sip:service@127.0.0.1:\(sipPort)", offer: offer.description)
        #expect(try await events.next("180") == .progress(call, status: 180))
        guard case .answered(call, let remote) = try await events.next("200") else {
            Issue.record("sipp did not answer: \(sipp.stderr)")
            return
        }
        let media = try MediaNegotiator.readAnswer(remote, for: offer)
        #expect(media.audio?.codec == .pcmu)
        await agent.hangUp(call)
        let status = try await sipp.exitStatus()
        #expect(status == 0, "sipp exit \(status): \(sipp.stderr)")
        await agent.shutdown()
    }

    @Test func sippCallsUs() async throws {
        let sipPort = try await freePort()
        let mediaPort = try await freePort()
        let (agent, events, port) = try await makeAgent(t1: .milliseconds(500))
        let sipp = try Sipp(arguments: ["-sn", "uac", "127.0.0.1:\(port)", "-s", "tablet", "-p", "\(sipPort)",
                                        "-mp", "\(mediaPort)", "-m", "1"])
        defer { sipp.stop() }
        guard case .incoming(let call, let fromURI, _, let offer) = try await events.next("INVITE from sipp") else {
            Issue.record("no incoming call: \(sipp.stderr)")
            return
        }
        #expect(fromURI.contains("127.0.0.1"))
        await agent.ring(call)
        let (answer, media) = try agent.mediaNegotiator(audioPort: 40000, videoPort: nil).answer(offer)
        #expect(media.audio?.codec == .pcmu)
        await agent.answer(call, with: answer)
        // sipp's uac scenario ACKs, then hangs up.
        #expect(try await events.next("BYE from sipp") == .remoteHungUp(call))
        let status = try await sipp.exitStatus()
        #expect(status == 0, "sipp exit \(status): \(sipp.stderr)")
        await agent.shutdown()
    }

    @Test func sippMalformedRequestsGet400() async throws {
        let scenario = """
            <?xml version="1.0" encoding="ISO-8859-1" ?>
            <scenario name="malformed requests">
              <send>
                <![CDATA[
                  OPTIONS sip:tablet@[remote_ip]:[remote_port] SIP/2.0
                  Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
                  From: <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
                  To: <sip:tablet@[remote_ip]:[remote_port]>
                  Call-ID: [call_id]
                  CSeq: 1 OPTIONS
                  Max-Forwards: lots
                  Content-Length: 0

                ]]>
              </send>
              <recv response="400"/>
              <send>
                <![CDATA[
                  OPTIONS sip:tablet@[remote_ip]:[remote_port] SIP/2.0
                  Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
                  From: <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
                  To: <sip:tablet@[remote_ip]:[remote_port]>
                  Call-ID: [call_id]
                  CSeq: 2 OPTIONS
                  Max-Forwards: 70
                  Content-Length: abc

                ]]>
              </send>
              <recv response="400"/>
              <send>
                <![CDATA[
                  OPTIONS sip:tablet@[remote_ip]:[remote_port] SIP/2.0
                  Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
                  From: <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
                  To: <sip:tablet@[remote_ip]:[remote_port]>
                  Call-ID: [call_id]
                  CSeq: 3 OPTIONS
                  Max-Forwards: 70
                  Content-Length: 0

                ]]>
              </send>
              <recv response="200"/>
            </scenario>
            """
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("malformed-\(UUID().uuidString).xml")
        try scenario.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let (agent, _, port) = try await makeAgent(t1: .milliseconds(500))
        let sipPort = try await freePort()
        let sipp = try Sipp(arguments: ["-sf", file.path, "127.0.0.1:\(port)", "-p", "\(sipPort)", "-m", "1"])
        defer { sipp.stop() }
        let status = try await sipp.exitStatus()
        #expect(status == 0, "sipp exit \(status): \(sipp.stderr)")
        await agent.shutdown()
    }
}
