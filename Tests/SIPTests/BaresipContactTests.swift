import Foundation
import TestSupport
import Testing

/// The built `beeldzorgd` registered over TLS at a real Kamailio, called by a real baresip as a
/// family contact through that Kamailio (issue 3, "baresip as a family contact"): a caller on
/// the contact list rings the tablet (180, the daemon's phase `incomingRinging`); a caller not
/// on it gets 403 and a call-log entry.
@Suite(.serialized) struct BaresipContactTests {
    static let password = "pw-Ct58-wEr"

    /// One `beeldzorgd` with its own directory and configuration; stopped by its PID.
    final class Daemon {
        let directory: URL
        let socketPath: String
        let databasePath: String
        let peer: PeerProcess

        /// The daemon and beeldzorgctl next to this test bundle (as IntegrationTests finds them).
        static var binaries: URL { BuiltProducts.directory }

        /// `posts`: the centrale's post URIs; nil = one demo post nobody calls.
        /// `centraleExtra`: more `centrale:` lines (`key: value`).
        init(proxy: CentraleProxy, certificates: TestCertificates, posts: [String]? = nil, policy: String = "ring_all",
             centraleExtra: [String] = []) async throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("bzd-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let d = directory.path
            socketPath = "\(d)/control.sock"
            databasePath = "\(d)/beeldzorg.sqlite"
            let demoPost = try await freePort(udp: true)
            // The edge proxy by name: the certificate is for localhost (an IP address cannot be
            // sent as SNI). demo_centrale seeds the family contact sip:marieke@127.0.0.1 (and runs a demo
            // post nobody calls here).
            let configuration = try writeDaemonFiles(
                in: d, password: BaresipContactTests.password, domain: CentraleProxy.realm, listenHost: "127.0.0.1",
                transport: "tls", edgeProxy: "sip:localhost:\(proxy.tlsPort)", caFile: certificates.caFile,
                posts: posts ?? ["sip:post1@127.0.0.1:\(demoPost)"], policy: policy, deadlineSeconds: 20,
                demoCentrale: posts == nil, centraleExtra: centraleExtra)
            peer = PeerProcess(name: "beeldzorgd", executable: Self.binaries.appendingPathComponent("beeldzorgd").path,
                               arguments: ["--config", configuration, "--console", "--log-level", "debug"],
                               logURL: directory.appendingPathComponent("daemon.log"), emptySignalMask: false)
            try peer.start()
        }

        var log: String { peer.log }

        /// `beeldzorgctl ARGS --json` output (status through the socket, calls from the database),
        /// through `spawnAndRead` (posix_spawn: Foundation's Process exit can be noticed late).
        func ctl(_ arguments: [String]) throws -> String {
            try spawnAndRead([Self.binaries.appendingPathComponent("beeldzorgctl").path] + arguments + ["--json"])
        }

        var phase: String? {
            let text = (try? ctl(["status", "--socket", socketPath])) ?? ""
            guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                  let call = object["call"] as? [String: Any]
            else { return nil }
            return call["phase"] as? String
        }

        /// The daemon's status as JSON (nil while the control socket does not answer).
        var status: [String: Any]? {
            let text = (try? ctl(["status", "--socket", socketPath])) ?? ""
            return try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        }

        /// The names the idle screen lists as missed calls (`status` → `call.missed`).
        var missedNames: [String]? {
            guard let call = status?["call"] as? [String: Any] else { return nil }
            return ((call["missed"] as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String }
        }

        /// Writes a line to the button FIFO (what the hardware button's events become).
        func button(_ line: String) throws {
            let fd = open(directory.appendingPathComponent("button").path, O_WRONLY | O_NONBLOCK)
            guard fd >= 0 else { throw CommandFailed(command: "button", output: String(cString: strerror(errno))) }
            defer { close(fd) }
            let bytes = Array((line + "\n").utf8)
            guard write(fd, bytes, bytes.count) == bytes.count else { throw CommandFailed(command: "button", output: "short write") }
        }

        var calls: String { (try? ctl(["calls", "--database", databasePath])) ?? "" }

        func waitFor(_ what: String, timeout: Duration = .seconds(20), _ condition: () -> Bool) async throws {
            let met = try await poll(every: .milliseconds(100), timeout: timeout) {
                if condition() { return true }
                guard peer.isRunning else { throw CommandFailed(command: "beeldzorgd exited waiting for \(what)", output: log) }
                return false
            }
            guard met else { throw CommandFailed(command: "waiting for \(what)", output: String(log.suffix(6000))) }
        }

        func stop() { peer.stop() }

        deinit {
            stop()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// Kamailio, the daemon registered through it, and a baresip family member calling from
    /// `user`@127.0.0.1 through Kamailio's UDP side.
    func call(from user: String, _ body: (Daemon, Baresip, CentraleProxy) async throws -> Void) async throws {
        let certificates = try TestCertificates()
        let proxy = try await CentraleProxy(certificates: certificates, password: Self.password, posts: [])
        defer { proxy.stop() }
        let daemon = try await Daemon(proxy: proxy, certificates: certificates)
        defer { daemon.stop() }
        try await daemon.waitFor("the tablet to register over TLS") { proxy.log.contains("REGISTER accepted for tablet") }
        let caller = try await Baresip(
            name: user, account: "<sip:\(user)@127.0.0.1>;regint=0;outbound=\"sip:127.0.0.1:\(proxy.udpPort)\"")
        try await caller.start()
        defer { caller.stop() }
        try await caller.command("dial", "sip:tablet@\(CentraleProxy.realm)")
        try await body(daemon, caller, proxy)
    }

    @Test func aFamilyContactCallsAndTheTabletRings() async throws {
        try await call(from: "marieke") { daemon, caller, proxy in
            try await daemon.waitFor("the tablet to ring") { daemon.phase == "incomingRinging" }
            // 180 reached the caller through Kamailio and the tablet's TLS flow.
            try await caller.next("CALL_RINGING", timeout: .seconds(10))
            #expect(proxy.log.contains("request INVITE sip:tablet@\(CentraleProxy.realm)"))
            // The caller gives up: the tablet stops ringing.
            try await caller.command("hangup")
            try await daemon.waitFor("the ringing to stop") { daemon.phase == "idle" }
        }
    }

    /// Issue 20, problem 3: Marieke calls, nobody answers, she hangs up: the idle screen says
    /// so (status `call.missed`, the same list the screen draws). A press still calls the
    /// centrale at once; the note stays. She calls again and the client answers with the
    /// button: the note is gone, and the call log has both calls.
    @Test func aMissedCallStaysUntilTheContactIsAnswered() async throws {
        try await call(from: "marieke") { daemon, caller, _ in
            try await daemon.waitFor("the tablet to ring") { daemon.phase == "incomingRinging" }
            try await caller.next("CALL_RINGING", timeout: .seconds(10))
            try await caller.command("hangup")
            try await daemon.waitFor("the missed call on the idle screen") {
                daemon.phase == "idle" && daemon.missedNames == ["Marieke"]
            }

            try daemon.button("press")
            try await daemon.waitFor("the press to call the centrale") { daemon.phase != "idle" }
            #expect(["callingCentrale", "ringingOut", "inCall", "unreachable"].contains(daemon.phase ?? ""), "\(daemon.phase ?? "-")")
            try daemon.button("long")
            try await daemon.waitFor("the attempt to end", timeout: .seconds(40)) { daemon.phase == "idle" }
            #expect(daemon.missedNames == ["Marieke"], "a press is not a call with Marieke")

            try await caller.command("dial", "sip:tablet@\(CentraleProxy.realm)")
            try await daemon.waitFor("the tablet to ring again") { daemon.phase == "incomingRinging" }
            try daemon.button("press")
            try await daemon.waitFor("the client to answer") { daemon.phase == "inCall" }
            #expect(daemon.missedNames == [], "answered: nothing missed any more")
            try await caller.command("hangup")
            try await daemon.waitFor("the call to end") { daemon.phase == "idle" }
            #expect(daemon.missedNames == [])
            let calls = daemon.calls
            #expect(calls.contains("\"missed\"") && calls.contains("\"answered\""), "\(calls)")
        }
    }

    @Test func aStrangerGets403AndACallLogEntry() async throws {
        try await call(from: "onbekend") { daemon, caller, _ in
            let closed = try await caller.next("CALL_CLOSED", timeout: .seconds(15))
            #expect(closed.fields["param"]?.contains("403") == true, "\(closed)")
            let ringing = await caller.all().contains { $0.type == "CALL_RINGING" }
            #expect(!ringing, "a stranger heard ringing")
            try await daemon.waitFor("the rejection in the call log") {
                daemon.calls.contains("notAContact") && daemon.calls.contains("onbekend@127.0.0.1")
            }
            #expect(daemon.phase == "idle")
        }
    }
}
