import Foundation
import TestSupport
import Testing

/// Issue 3, "network changes": the registering side (`sip-benchmark register`) runs in a
/// network namespace of the test's own, Kamailio on the host end of the veth pair. The link is
/// taken down long enough for registration to fail and fall back to its backoff timer (15 s at
/// the least here), then brought up: with the netlink watcher it registers again at once;
/// without it (the control case) it waits for the timer.
@Suite(.serialized, .enabled(if: NetworkNamespace.available, "needs root and ip(8)"))
struct NetworkChangeTests {
    static let password = "pw-Nl3t-link"

    /// The built `sip-benchmark`, next to the test bundle.
    static var benchmark: String { BuiltProducts.path("sip-benchmark") }

    /// Registers from inside a namespace, cuts the link until registration has failed for good
    /// (its REGISTER ran out of Timer F), brings the link up and returns how long it then took
    /// to be registered again, or nil if it did not happen within `within`.
    func linkDownUp(watchNetwork: Bool, transport: String = "udp", within: Duration) async throws -> Duration? {
        return try await NetworkNamespace.withKamailio(password: Self.password) { namespace, certificates, kamailio in
            let passwordFile = certificates.directory.appendingPathComponent("password").path
            try "\(Self.password)\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
            // Backoff 30 s: after a failure the retry timer waits at least 15 s. T1 100 ms: a
            // REGISTER gives up after 6.4 s (Timer F), so no retransmission is left to mask the
            // watcher once the link is back.
            let proxy = transport == "tcp" ? kamailio.tcpURI : kamailio.udpURI
            var arguments = ["register", "--proxy", proxy, "--transport", transport, "--user", "tablet",
                             "--domain", Kamailio.realm,
                             "--password-file", passwordFile, "--local-host", namespace.tabletAddress,
                             "--backoff-ms", "30000", "--keepalive-ms", "1000", "--t1-ms", "100", "--expires", "600"]
            if watchNetwork { arguments.append("--watch-network") }
            let (_, lines) = try namespace.launch(Self.benchmark, arguments)
            _ = try await lines.next("ready", timeout: .seconds(10))
            _ = try await lines.next("registered", timeout: .seconds(10))

            try namespace.setTabletLink(up: false)
            // UDP: the keepalive notices the dead flow; the REGISTER that follows runs out of time.
            // TCP: the flow is re-dialled (watcher) or its CRLF pong is missed, and the dial fails.
            let noticed = try await lines.next("failed", timeout: .seconds(10)).line
            print("link down noticed: \(noticed)")
            if transport == "udp" {
                _ = try await lines.next("failed \(proxy) no response", timeout: .seconds(20))
            } else {
                try await Task.sleep(for: .seconds(2))  // every attempt now waits for the 15–30 s backoff
            }
            lines.consumeAll()

            let up = ContinuousClock.now
            try namespace.setTabletLink(up: true)
            guard let registered = try? await lines.next("registered", timeout: within) else {
                print("not registered within \(within) of link up (watcher \(watchNetwork ? "on" : "off"))")
                return nil
            }
            let elapsed = registered.at - up
            print("link up → registered again over \(transport): \(wholeMilliseconds(elapsed)) ms (watcher \(watchNetwork ? "on" : "off"))")
            #expect(kamailio.log.components(separatedBy: "REGISTER accepted for tablet").count - 1 >= 2)
            return elapsed
        }
    }

    @Test(arguments: ["udp", "tcp"])
    func linkDownAndUpRegistersAgainAtOnce(transport: String) async throws {
        let elapsed = try await linkDownUp(watchNetwork: true, transport: transport, within: .seconds(10))
        // Generous: anything under the 15 s backoff floor can only have come from the watcher.
        #expect(elapsed != nil, "not registered again within 10 s of the link coming up")
    }

    /// The control: without the watcher nothing re-registers until the backoff timer, so the
    /// test above does measure the watcher.
    @Test func withoutTheWatcherItWaitsForTheTimer() async throws {
        let elapsed = try await linkDownUp(watchNetwork: false, within: .seconds(8))
        #expect(elapsed == nil, "registered again without the watcher, after \(elapsed.map { "\($0)" } ?? "")")
    }
}

/// Whole milliseconds, for printed figures.
func wholeMilliseconds(_ duration: Duration) -> Int {
    let (seconds, attoseconds) = duration.components
    return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
}

/// The same through the built `beeldzorgd` (its `watchNetwork` wiring): the daemon runs in the
/// namespace with its default timers (keepalive 25 s, refresh at half of 600 s), so after a
/// 3 s outage nothing but the netlink watcher makes it send a REGISTER.
@Suite(.serialized, .enabled(if: NetworkNamespace.available, "needs root and ip(8)"))
struct DaemonNetworkChangeTests {
    static var daemon: String {
        BuiltProducts.path("beeldzorgd")
    }

    @Test func daemonRegistersAgainWhenTheLinkComesBack() async throws {
        try await NetworkNamespace.withKamailio(password: NetworkChangeTests.password) { namespace, certificates, kamailio in
            let d = certificates.directory.path
            let configuration = try writeDaemonFiles(
                in: d, password: NetworkChangeTests.password, domain: Kamailio.realm, listenHost: namespace.tabletAddress,
                transport: "udp", edgeProxy: kamailio.udpURI, posts: ["sip:post1@\(Kamailio.realm)"])
            let (_, lines) = try namespace.launch(Self.daemon, ["--config", configuration, "--console", "--log-level", "debug"])
            func accepted() -> Int { kamailio.log.components(separatedBy: "REGISTER accepted for tablet").count - 1 }
            func waitFor(_ what: String, timeout: Duration, _ condition: () -> Bool) async throws {
                guard try await poll(timeout: timeout, condition) else {
                    throw TimedOut(what: "\(what); daemon output:\n\(String(lines.text.suffix(4000)))")
                }
            }
            try await waitFor("the daemon registered", timeout: .seconds(20)) { accepted() >= 1 }
            // The flow and its keepalive state reach `beeldzorgctl status`.
            let ctl = URL(fileURLWithPath: Self.daemon).deletingLastPathComponent().appendingPathComponent("beeldzorgctl").path
            var status = ""
            try await waitFor("registration in beeldzorgctl status", timeout: .seconds(10)) {
                status = (try? spawnAndRead([ctl, "status", "--socket", "\(d)/control.sock", "--json"])) ?? ""
                return status.contains("flow keepalive STUN")
            }
            #expect(status.contains(kamailio.udpURI))
            try await Task.sleep(for: .seconds(1))  // the initial burst of netlink messages settles
            try namespace.setTabletLink(up: false)
            try await Task.sleep(for: .seconds(3))
            let before = accepted()
            let up = ContinuousClock.now
            try namespace.setTabletLink(up: true)
            try await waitFor("a REGISTER after link up", timeout: .seconds(10)) { accepted() > before }
            print("beeldzorgd: link up → REGISTER accepted by Kamailio: \(wholeMilliseconds(ContinuousClock.now - up)) ms")
            #expect(lines.text.contains("network changed"))
        }
    }
}
