import Foundation
import TestSupport
import Testing

/// Issue 19, Deliver 4: "a callback promise that is true". The built beeldzorgd registered over
/// TLS at a real Kamailio (the centrale's edge); every post answers 486 Busy (a **sipp** post);
/// the callback request goes as a SIP MESSAGE through Kamailio to a callback URI served by
/// another **sipp** (answering with the status the test gives it). Until a 2xx the client hears
/// and sees that the tablet keeps trying; only then "De centrale belt u terug"; a post calling
/// the tablet (a **baresip** registered as that post's address) clears it and the call log
/// points at the request.
@Suite(.serialized) struct CallbackDaemonTests {
    typealias Daemon = BaresipContactTests.Daemon

    /// A sipp UAS on `port`: a post that answers every INVITE 486 (OPTIONS 200 with `-aa`), or a
    /// callback URI that answers every MESSAGE with `status`; messages are traced to a file.
    final class SippPeer {
        let sipp: SippTests.Sipp
        let port: Int
        let trace: URL

        init(port: Int, busyPost: Bool = false, messageStatus: Int = 200) throws {
            self.port = port
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sippcb-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let scenario = directory.appendingPathComponent("uas.xml")
            trace = directory.appendingPathComponent("messages.log")
            let request = busyPost ? "INVITE" : "MESSAGE"
            let status = busyPost ? 486 : messageStatus
            let ack = busyPost ? "<recv request=\"ACK\" />" : ""
            try """
            <?xml version="1.0" encoding="ISO-8859-1" ?>
            <scenario name="uas">
              <recv request="\(request)" />
              <send>
                <![CDATA[
                  SIP/2.0 \(status) Answer
                  [last_Via:]
                  [last_From:]
                  [last_To:];tag=[pid]SIPpTag01[call_number]
                  [last_Call-ID:]
                  [last_CSeq:]
                  Content-Length: 0

                ]]>
              </send>
              \(ack)
            </scenario>
            """.write(to: scenario, atomically: true, encoding: .utf8)
            sipp = try SippTests.Sipp(arguments: ["-sf", scenario.path, "-p", "\(port)", "-aa", "-trace_msg",
                                                  "-message_file", trace.path, "-timeout", "600s"])
        }

        var messages: String { (try? String(contentsOf: trace, encoding: .utf8)) ?? "" }
        /// MESSAGE requests received, counted by their request line.
        var messageCount: Int { messages.components(separatedBy: "MESSAGE sip:").count - 1 }

        func waitUntilBound() async throws {
            let hex = String(format: ":%04X ", port)
            let bound = try await poll(timeout: .seconds(10)) {
                (try? String(contentsOfFile: "/proc/net/udp", encoding: .utf8))?.contains(hex) ?? false
            }
            guard bound else { throw TimedOut(what: "sipp to bind port \(port)") }
        }

        /// SIGKILL by PID: sipp finishes its open calls on SIGTERM first, which with `-aa`
        /// can take longer than a test should wait.
        func stop() {
            guard sipp.process.isRunning else { return }
            kill(sipp.process.processIdentifier, SIGKILL)
            sipp.process.waitUntilExit()
        }

        deinit { stop() }
    }

    static func sql(_ daemon: Daemon, _ query: String) -> String {
        ((try? spawnAndRead(["/usr/bin/sqlite3", daemon.databasePath, query])) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func callback(_ daemon: Daemon) -> String? {
        (daemon.status?["call"] as? [String: Any])?["callback"] as? String
    }

    /// Kamailio, a busy sipp post and the daemon with `extra` centrale lines, registered.
    static func withBusyCentrale(
        extra: (_ callbackPort: Int, _ fallbackPort: Int) -> [String],
        _ body: (Daemon, CentraleProxy, _ callbackPort: Int, _ fallbackPort: Int, _ postPort: Int) async throws -> Void
    ) async throws {
        let certificates = try TestCertificates()
        let proxy = try await CentraleProxy(certificates: certificates, password: BaresipContactTests.password, posts: [])
        defer { proxy.stop() }
        let postPort = try await freePort(udp: true)
        let callbackPort = try await freePort(udp: true)
        var fallbackPort = try await freePort(udp: true)
        while fallbackPort == callbackPort || fallbackPort == postPort { fallbackPort = try await freePort(udp: true) }
        let post = try SippPeer(port: postPort, busyPost: true)
        defer { post.stop() }
        try await post.waitUntilBound()
        let daemon = try await Daemon(proxy: proxy, certificates: certificates, posts: ["sip:centrale@127.0.0.1:\(postPort)"],
                                      centraleExtra: extra(callbackPort, fallbackPort))
        defer { daemon.stop() }
        try await daemon.waitFor("the tablet to register over TLS") { proxy.log.contains("REGISTER accepted for tablet") }
        try await daemon.waitFor("the daemon to be idle") { daemon.phase == "idle" }
        try await body(daemon, proxy, callbackPort, fallbackPort, postPort)
    }

    @Test func everyPostBusyTheCentraleAcknowledgesThenAPostCallsBack() async throws {
        try await Self.withBusyCentrale(extra: { port, _ in ["callback_uri: sip:callback@127.0.0.1:\(port)"] }) {
            daemon, proxy, callbackPort, _, postPort in
            // Nothing answers at the callback URI yet: the request stays unacknowledged.
            try daemon.button("press")
            try await daemon.waitFor("the busy post to end the attempt") { daemon.phase == "unreachable" }
            try await daemon.waitFor("the MESSAGE through the proxy") {
                proxy.log.contains("request MESSAGE sip:callback@127.0.0.1:\(callbackPort)")
            }
            #expect(Self.callback(daemon) == "trying")
            #expect(daemon.log.contains("De beeldzorgcentrale is nu niet bereikbaar."))
            #expect(daemon.log.contains("Ik blijf proberen de centrale te bereiken."))
            #expect(!daemon.log.contains("De centrale belt u terug"), "promised before any acknowledgement")
            #expect(Self.sql(daemon, "SELECT deliveryState FROM callbackRequest") == "pending")

            // The centrale's callback service comes up: the next attempt is acknowledged.
            let service = try SippPeer(port: callbackPort)
            defer { service.stop() }
            try await service.waitUntilBound()
            try await daemon.waitFor("the acknowledgement", timeout: .seconds(30)) { Self.callback(daemon) == "promised" }
            #expect(daemon.log.contains("De centrale weet dat u hebt gebeld. De centrale belt u terug."))
            #expect(Self.sql(daemon, "SELECT deliveryState || ' ' || acknowledgedBy FROM callbackRequest") == "acknowledged primary")
            // The MESSAGE: From the tablet's address of record, a JSON body with the press and the posts.
            let message = service.messages
            #expect(message.contains("From: <sip:tablet@\(CentraleProxy.realm)>"), "\(message)")
            #expect(message.contains("Content-Type: application/json"))
            #expect(message.contains("\"postsTried\":[\"post-1\"]"))
            #expect(message.contains("\"client\":\"sip:tablet@\(CentraleProxy.realm)\""))
            #expect(message.contains("\"pressedAt\":"))
            let id = Self.sql(daemon, "SELECT id FROM callbackRequest")
            #expect(message.contains("\"id\":\"\(id)\""))

            // A post calls the tablet back (baresip as the post's address, through Kamailio).
            let caller = try await Baresip(
                name: "callback-post",
                account: "<sip:centrale@127.0.0.1>;regint=0;outbound=\"sip:127.0.0.1:\(proxy.udpPort)\"")
            try await caller.start()
            defer { caller.stop() }
            try await caller.command("dial", "sip:tablet@\(CentraleProxy.realm)")
            try await daemon.waitFor("the tablet to ring") { daemon.phase == "incomingRinging" }
            try await daemon.waitFor("the request to be cleared") { Self.callback(daemon) == nil }
            #expect(Self.sql(daemon, "SELECT deliveryState FROM callbackRequest") == "cleared")
            #expect(Self.sql(daemon, "SELECT count(*) FROM callRecord WHERE direction = 'incoming' AND callbackRequestID = '\(id)'") == "1")
            _ = postPort
            try await caller.command("hangup")
            try await daemon.waitFor("the ringing to stop") { daemon.phase == "idle" }
        }
    }

    @Test func aDeadCallbackURIEscalatesToTheFallbackAfterTheConfiguredTime() async throws {
        try await Self.withBusyCentrale(extra: { port, fallback in
            ["callback_uri: sip:callback@127.0.0.1:\(port)", "callback_fallback_uri: sip:callback@127.0.0.1:\(fallback)",
             "callback_escalate_after_seconds: 3"]
        }) { daemon, proxy, _, fallbackPort, _ in
            let fallback = try SippPeer(port: fallbackPort)
            defer { fallback.stop() }
            try await fallback.waitUntilBound()
            try daemon.button("press")
            try await daemon.waitFor("the busy post to end the attempt") { daemon.phase == "unreachable" }
            let gaveUp = ContinuousClock.now
            try await daemon.waitFor("the fallback's acknowledgement", timeout: .seconds(20)) { Self.callback(daemon) == "promised" }
            let after = ContinuousClock.now - gaveUp
            print("callback: escalated and acknowledged by the fallback after \(after)")
            #expect(after >= .seconds(2), "acknowledged before the escalation time")
            #expect(after <= .seconds(10))
            #expect(Self.sql(daemon, "SELECT acknowledgedBy, escalatedAt IS NOT NULL FROM callbackRequest") == "fallback|1")
            #expect(daemon.log.contains("escalated to the fallback"))
            #expect(fallback.messageCount == 1)
            #expect(fallback.messages.contains("\"escalated\":true"))
            _ = proxy
        }
    }

    @Test func sigkillWhileUnacknowledgedDeliversOnceAfterTheRestart() async throws {
        try await Self.withBusyCentrale(extra: { port, _ in ["callback_uri: sip:callback@127.0.0.1:\(port)"] }) {
            daemon, _, callbackPort, _, _ in
            // The callback service refuses for now (503): the request stays pending.
            let refusing = try SippPeer(port: callbackPort, messageStatus: 503)
            try await refusing.waitUntilBound()
            try daemon.button("press")
            try await daemon.waitFor("a refused attempt") { refusing.messageCount >= 1 }
            #expect(Self.callback(daemon) == "trying")
            daemon.peer.killAbruptly()
            refusing.stop()
            #expect(Self.sql(daemon, "SELECT deliveryState FROM callbackRequest") == "pending")

            let service = try SippPeer(port: callbackPort)
            defer { service.stop() }
            try await service.waitUntilBound()
            try daemon.peer.start()
            try await daemon.waitFor("the restarted daemon's acknowledgement", timeout: .seconds(30)) {
                Self.callback(daemon) == "promised"
            }
            // Exactly once: watch a while longer (a bounded observation, longer than the first backoffs).
            let until = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < until { try await Task.sleep(for: .milliseconds(250)) }
            #expect(service.messageCount == 1, "\(service.messages)")
            #expect(Self.sql(daemon, "SELECT count(*) || ' ' || deliveryState FROM callbackRequest") == "1 acknowledged")
        }
    }
}
