import Foundation
import Media
import SIP
import Testing

/// The built `beeldzorgd` in a call with a sipp post that re-INVITEs the way a centrale's
/// B2BUA does (a call moved to a new media relay, hold, a resume on yet another relay, an
/// offer we cannot take). The post's media ports are UDP sockets of this test: they show where
/// the daemon's SRTP goes and whether it authenticates with the key of our latest answer (read
/// back from sipp's log).
@Suite(.serialized) struct ReinviteDaemonTests {
    /// A UDP socket on loopback that keeps every datagram with its arrival time.
    final class MediaSink: @unchecked Sendable {
        let port: Int
        private let fd: Int32
        private let lock = NSLock()
        private var received: [(at: Date, bytes: [UInt8])] = []
        private var stopped = false

        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            self.fd = fd
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard fd >= 0, bound == 0 else { throw ReinviteTestFailure(command: "bind a media sink", output: "errno \(errno)") }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            port = Int(UInt16(bigEndian: address.sin_port))
            var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        /// Starts keeping what arrives (a thread of its own until `stop`).
        func start() {
            Thread.detachNewThread { [self] in
                var buffer = [UInt8](repeating: 0, count: 2048)
                while !lock.withLock({ stopped }) {
                    let count = recv(fd, &buffer, buffer.count, 0)
                    if count > 0 {
                        let bytes = Array(buffer[0..<count])
                        lock.withLock { received.append((Date(), bytes)) }
                    }
                }
            }
        }

        var packets: [(at: Date, bytes: [UInt8])] { lock.withLock { received } }

        func stop() {
            lock.withLock { stopped = true }
            Thread.sleep(forTimeInterval: 0.2)
            close(fd)
        }
    }

    /// How many of `packets` authenticate (and decrypt) as SRTP with `key`, in arrival order.
    static func authenticated(_ packets: [(at: Date, bytes: [UInt8])], key: [UInt8]) throws -> Int {
        let session = try SRTPSession(masterKeyAndSalt: key, direction: .inbound)
        return packets.filter { RTPPacketKind.classify($0.bytes) == .rtp && (try? session.unprotect($0.bytes)) != nil }.count
    }

    static func randomKey() -> String {
        Data((0..<30).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    }

    /// One offer (or answer) of the post's: audio on `port` with `key` (plain RTP without it),
    /// video declined.
    static func postSDP(version: Int, port: String, key: String?, direction: String) -> String {
        let proto = key == nil ? "RTP/AVP" : "RTP/SAVP"
        let crypto = key.map { "\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:[\($0)]" } ?? ""
        return """
            v=0
            o=post 7 \(version) IN IP4 [local_ip]
            s=-
            c=IN IP4 [local_ip]
            t=0 0
            m=audio [\(port)] \(proto) 111
            a=rtpmap:111 opus/48000/2
            a=rtcp-mux
            a=\(direction)\(crypto)
            m=video 0 \(proto) 96
            """
    }

    /// A re-INVITE from the post (sipp answered the daemon's INVITE, so it is the UAS).
    static func reinvite(cseq: Int, sdp: String) -> String {
        """
          <send>
            <![CDATA[
              INVITE [$target] SIP/2.0
              Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
              From: [$post];tag=[pid]SIPpTag01[call_number]
              To: [$tablet]
              Call-ID: [call_id]
              CSeq: \(cseq) INVITE
              Contact: <sip:centrale@[local_ip]:[local_port]>
              Max-Forwards: 70
              Content-Type: application/sdp
              Content-Length: [len]

        \(sdp.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n"))

            ]]>
          </send>
        """
    }

    static func ack(cseq: Int, via: String = "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]") -> String {
        """
          <send>
            <![CDATA[
              ACK [$target] SIP/2.0
              \(via)
              From: [$post];tag=[pid]SIPpTag01[call_number]
              To: [$tablet]
              Call-ID: [call_id]
              CSeq: \(cseq) ACK
              Max-Forwards: 70
              Content-Length: 0

            ]]>
          </send>
        """
    }

    static var scenario: String {
        """
        <?xml version="1.0" encoding="ISO-8859-1" ?>
        <scenario name="a post that moves, holds and resumes the call">
          <recv request="INVITE" crlf="true">
            <action>
              <ereg regexp="[^ ].*" search_in="hdr" header="From:" assign_to="tablet"/>
              <ereg regexp="[^ ].*" search_in="hdr" header="To:" assign_to="post"/>
              <!-- The tablet's Contact is the remote target of its requests (RFC 3261 §12.1.2);
                   sipp's [remote_ip] is empty here, and sip:tablet@:5060 now gets 400. -->
              <ereg regexp="sip:[^>]*" search_in="hdr" header="Contact:" assign_to="target"/>
            </action>
          </recv>
          <send>
            <![CDATA[
              SIP/2.0 200 OK
              [last_Via:]
              [last_From:]
              [last_To:];tag=[pid]SIPpTag01[call_number]
              [last_Call-ID:]
              [last_CSeq:]
              Contact: <sip:centrale@[local_ip]:[local_port]>
              Content-Type: application/sdp
              Content-Length: [len]

        \(postSDP(version: 1, port: "port1", key: "key1", direction: "sendrecv").split(separator: "\n").map { "      " + $0 }.joined(separator: "\n"))

            ]]>
          </send>
          <recv request="ACK"/>
          <pause milliseconds="2500"/>
        \(reinvite(cseq: 101, sdp: postSDP(version: 2, port: "port2", key: "key2", direction: "sendrecv")))
          <recv response="100" optional="true"/>
          <recv response="200"/>
        \(ack(cseq: 101))
          <pause milliseconds="3000"/>
        \(reinvite(cseq: 102, sdp: postSDP(version: 3, port: "port2", key: "key2", direction: "sendonly")))
          <recv response="100" optional="true"/>
          <recv response="200"/>
        \(ack(cseq: 102))
          <pause milliseconds="2500"/>
        \(reinvite(cseq: 103, sdp: postSDP(version: 4, port: "port3", key: "key3", direction: "sendrecv")))
          <recv response="100" optional="true"/>
          <recv response="200"/>
        \(ack(cseq: 103))
          <pause milliseconds="3000"/>
        \(reinvite(cseq: 104, sdp: postSDP(version: 5, port: "port3", key: nil, direction: "sendrecv")))
          <recv response="100" optional="true"/>
          <recv response="488"/>
        \(ack(cseq: 104, via: "[last_Via:]"))
          <pause milliseconds="2000"/>
          <send>
            <![CDATA[
              BYE [$target] SIP/2.0
              Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
              From: [$post];tag=[pid]SIPpTag01[call_number]
              To: [$tablet]
              Call-ID: [call_id]
              CSeq: 105 BYE
              Max-Forwards: 70
              Content-Length: 0

            ]]>
          </send>
          <recv response="200"/>
        </scenario>
        """
    }

    /// sipp's message log as (time, text) blocks, each a message sent or received.
    static func messages(_ log: String) -> [(at: Date, text: String)] {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return log.components(separatedBy: "-----------------------------------------------").compactMap { block in
            guard let first = block.split(whereSeparator: \.isNewline).first else { return nil }
            let stamp = first.trimmingCharacters(in: .whitespaces)
            let parts = stamp.split(separator: ".")
            guard parts.count == 2, let whole = formatter.date(from: String(parts[0])), let fraction = Double("0." + parts[1])
            else { return nil }
            return (whole.addingTimeInterval(fraction), block)
        }
    }

    /// Our SRTP key in an SDP body inside a logged message.
    static func ourKey(_ text: String) throws -> [UInt8] {
        let line = try #require(text.split(whereSeparator: \.isNewline).first { $0.hasPrefix("a=crypto:") }, "no a=crypto in \(text)")
        let inline = try #require(line.split(separator: " ").first { $0.hasPrefix("inline:") })
        return try #require(SRTPKeyMaterial(base64: String(inline.dropFirst("inline:".count).prefix { $0 != "|" }))?.bytes)
    }

    @Test func aPostMovesHoldsAndResumesTheCallAndTheDaemonsSRTPFollows() async throws {
        let sinks = try (0..<3).map { _ in try MediaSink() }
        sinks.forEach { $0.start() }
        defer { sinks.forEach { $0.stop() } }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bz-reinvite-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let scenarioFile = directory.appendingPathComponent("post.xml")
        let messageLog = directory.appendingPathComponent("messages.log")
        try Self.scenario.write(to: scenarioFile, atomically: true, encoding: .utf8)

        let sipPort = try await ReinviteTests.freeUDPPort()
        let postKeys = (0..<3).map { _ in Self.randomKey() }
        var arguments = ["-sf", scenarioFile.path, "-p", "\(sipPort)", "-m", "1", "-trace_msg", "-message_file", messageLog.path]
        for (n, sink) in sinks.enumerated() { arguments += ["-key", "port\(n + 1)", "\(sink.port)", "-key", "key\(n + 1)", postKeys[n]] }
        // The daemon first, and sipp once the daemon's first OPTIONS round has found nobody on
        // its port: a uas scenario takes the first new Call-ID as its call, so it must be the
        // INVITE. With no post known alive, the press still calls them all.
        let daemon = try Daemon(directory: directory, post: "sip:centrale@127.0.0.1:\(sipPort)")
        defer { daemon.stop() }
        try await daemon.waitFor("the daemon's first OPTIONS round") { daemon.log.contains("post liveness") }
        let sipp = try SippTests.Sipp(arguments: arguments)
        defer { sipp.stop() }
        let hex = String(format: ":%04X ", sipPort)
        try await daemon.waitFor("sipp to bind its port") {
            (try? String(contentsOfFile: "/proc/net/udp", encoding: .utf8))?.contains(hex) ?? false
        }
        try daemon.button("press")
        do {
            try await daemon.waitFor("the call to be up") { daemon.log.contains("[in gesprek") }
        } catch {
            Issue.record("\(error)\nsipp: \(sipp.stderr)")
            return
        }
        // While held, `beeldzorgctl status` says so (for a technician asking why the post hears
        // nothing); after the resume it does not.
        func heldInStatus() throws -> Bool? {
            let json = try spawnAndRead([Daemon.binaries.appendingPathComponent("beeldzorgctl").path, "status",
                                         "--socket", directory.appendingPathComponent("control.sock").path, "--json"])
                .filter { !$0.isWhitespace }
            return json.contains("\"heldByPost\":true") ? true : json.contains("\"heldByPost\":false") ? false : nil
        }
        try await daemon.waitFor("the post's hold") { daemon.log.contains("call held by the post") }
        let statusWhileHeld = try heldInStatus()
        // The resume comes on a third port: the second "moves the call's media".
        func resumed() -> Bool { daemon.log.components(separatedBy: "re-INVITE moves the call's media").count > 2 }
        if !resumed() {  // the hold lasts 2.5 s
            #expect(statusWhileHeld == true, "status while held")
        }
        try await daemon.waitFor("the post's resume") { resumed() }
        #expect(try heldInStatus() == false, "status after the resume")
        let status = try await sipp.exitStatus(timeout: .seconds(30))
        #expect(status == 0, "sipp exit \(status): \(sipp.stderr)\n\(daemon.log.suffix(4000))")
        try await daemon.waitFor("the call to end with the post's BYE") { daemon.log.contains("[gesprek beëindigd") }

        let log = Self.messages(try String(contentsOf: messageLog, encoding: .utf8))
        func received(_ what: String) throws -> (at: Date, text: String) {
            try #require(log.first { $0.text.contains("message received") && $0.text.contains(what) }, "sipp never got \(what)")
        }
        let invite = try received("INVITE sip:centrale@")
        let moved = try received("CSeq: 101 INVITE")
        let held = try received("CSeq: 102 INVITE")
        let resumed = try received("CSeq: 103 INVITE")
        let refused = try received("CSeq: 104 INVITE")
        #expect(moved.text.contains("SIP/2.0 200") && held.text.contains("SIP/2.0 200") && resumed.text.contains("SIP/2.0 200"))
        #expect(refused.text.contains("SIP/2.0 488"))
        #expect(held.text.contains("a=recvonly") && !held.text.contains("a=sendrecv"), "\(held.text)")
        // The ACK stops our 200s (RFC 3261 §13.3.1.4): sipp acknowledges at once, so the first
        // retransmission, T1 = 500 ms later, should not happen.
        let movedOKs = log.filter { $0.text.contains("message received") && $0.text.contains("CSeq: 101 INVITE") }
        #expect(movedOKs.count <= 2, "\(movedOKs.count) 200s to an acknowledged re-INVITE")
        let keys = [try Self.ourKey(invite.text), try Self.ourKey(moved.text), try Self.ourKey(resumed.text)]
        #expect(Set(keys.map { $0.description }).count == 3, "a fresh key for each new media session")
        #expect(try Self.ourKey(held.text) == keys[1], "hold restarts nothing: same session, same key")

        // Before the move: SRTP with our first key to the first port; after it, nothing there.
        let first = sinks[0].packets
        #expect(try Self.authenticated(first.filter { $0.at < moved.at }, key: keys[0]) >= 25)
        #expect(first.filter { $0.at > moved.at.addingTimeInterval(1) }.isEmpty, "media still goes to the old port")
        // After the move, until the hold: the new port, authenticated with the new key only.
        let second = sinks[1].packets
        let beforeHold = second.filter { $0.at < held.at }
        #expect(try Self.authenticated(beforeHold, key: keys[1]) >= 25, "\(beforeHold.count) packets on the new port")
        #expect(try Self.authenticated(beforeHold, key: keys[0]) == 0)
        // Held: the same session runs on but sends no RTP (our answer said recvonly); a margin
        // after the 200 for what was already in flight.
        let whileHeld = second.filter { $0.at > held.at.addingTimeInterval(0.3) && $0.at < resumed.at }
        #expect(try Self.authenticated(whileHeld, key: keys[1]) == 0, "\(whileHeld.count) packets while held")
        #expect(daemon.log.contains("call held by the post"))
        // Resumed on a third port with a third key, and still so after the refused offer.
        let third = sinks[2].packets
        #expect(try Self.authenticated(third, key: keys[2]) >= 50)
        let afterRefusal = third.filter { $0.at > refused.at.addingTimeInterval(0.5) }
        #expect(try Self.authenticated(afterRefusal, key: keys[2]) >= 25, "media stopped after the 488")
        print("SRTP packets: port 1 \(first.count), port 2 \(second.count), port 3 \(third.count) (\(afterRefusal.count) after the 488)")
    }

    /// beeldzorgd with sipp as its only post, over UDP without edge proxies; stopped by PID.
    final class Daemon {
        let directory: URL
        private let process = Process()
        private let output: URL

        /// Where `swift build` put beeldzorgd: next to this test bundle.
        static let binaries: URL = {
            var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            while url.pathComponents.count > 1 {
                url.deleteLastPathComponent()
                if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("beeldzorgd").path) { return url }
            }
            return URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug")
        }()

        /// The configuration: sipp (or any peer) as the only post, UDP, SRTP required;
        /// `account` and `extra` add lines to the account section and the top level.
        static func configuration(
            directory: URL, post: String, account: String = "", extra: String = "", listenHost: String = "127.0.0.1",
            domain: String = "127.0.0.1", transport: String = "udp"
        ) -> String {
            let d = directory.path
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            return """
            account:
              user: tablet
              domain: \(domain)
              listen_host: \(listenHost)
            \(account)
            transport: \(transport)
            srtp: required
            centrale:
              policy: ring_all
              deadline_seconds: 20
              posts:
                - id: post-1
                  uri: \(post)
            button:
              device: fifo:\(d)/button
            camera:
              device: test-pattern
            audio:
              capture: tone:440
              playback: "null"
            database: \(d)/beeldzorg.sqlite
            control_socket: \(d)/control.sock
            prompts: \(root.appendingPathComponent("prompts").path)
            demo_centrale: false
            \(extra)
            """
        }

        /// `launcher`: a command that execs the daemon with its arguments appended (e.g.
        /// `prlimit --nofile=1024:1024`, the descriptor limit the systemd unit gives it).
        init(directory: URL, post: String, account: String = "", extra: String = "", listenHost: String = "127.0.0.1",
             domain: String = "127.0.0.1", transport: String = "udp", environment: [String: String] = [:],
             launcher: [String] = []) throws {
            self.directory = directory
            output = directory.appendingPathComponent("daemon.log")
            let d = directory.path
            mkfifo("\(d)/button", 0o600)
            try Self.configuration(directory: directory, post: post, account: account, extra: extra, listenHost: listenHost,
                                   domain: domain, transport: transport)
                .write(toFile: "\(d)/beeldzorgd.yaml", atomically: true, encoding: .utf8)
            FileManager.default.createFile(atPath: output.path, contents: nil)
            let log = try FileHandle(forWritingTo: output)
            let daemon = Self.binaries.appendingPathComponent("beeldzorgd")
            let arguments = ["--config", "\(d)/beeldzorgd.yaml", "--console", "--log-level", "debug"]
            if let tool = launcher.first {
                process.executableURL = URL(fileURLWithPath: tool)
                process.arguments = Array(launcher.dropFirst()) + [daemon.path] + arguments
            } else {
                process.executableURL = daemon
                process.arguments = arguments
            }
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            process.standardOutput = log
            process.standardError = log
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        var isRunning: Bool { process.isRunning }
        var pid: Int32 { process.processIdentifier }

        var log: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

        func button(_ line: String) throws {
            let fd = open(directory.appendingPathComponent("button").path, O_WRONLY | O_NONBLOCK)
            guard fd >= 0 else { throw ReinviteTestFailure(command: "button", output: String(cString: strerror(errno))) }
            defer { close(fd) }
            let bytes = Array((line + "\n").utf8)
            guard write(fd, bytes, bytes.count) == bytes.count else { throw ReinviteTestFailure(command: "button", output: "short write") }
        }

        func waitFor(_ what: String, timeout: Duration = .seconds(20), _ condition: () -> Bool) async throws {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if condition() { return }
                guard process.isRunning else { throw ReinviteTestFailure(command: "beeldzorgd exited waiting for \(what)", output: log) }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw ReinviteTestFailure(command: "waiting for \(what)", output: String(log.suffix(6000)))
        }

        /// SIGKILL, as a power cut would end it; returns once the process is gone (bounded).
        func killAbruptly() {
            let pid = process.processIdentifier
            kill(pid, SIGKILL)
            let deadline = ContinuousClock.now + .seconds(5)
            while PeerProcess.isAlive(pid) && ContinuousClock.now < deadline { usleep(1_000) }
        }

        func stop() {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGTERM)
            for _ in 0..<100 where process.isRunning { usleep(50_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }

        deinit { stop() }
    }
}

struct ReinviteTestFailure: Error, CustomStringConvertible {
    let command: String
    let output: String
    var description: String { "\(command)\n\(output)" }
}
