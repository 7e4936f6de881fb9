import Foundation
import Testing
import TestSupport

/// Debian's dnsmasq-base; outside the suite's type, which its `.enabled` condition cannot name.
let dnsmasqPath = "/usr/sbin/dnsmasq"

/// Issue 16, "no DNS at power-on" and RFC 3263: the built beeldzorgd runs in a network
/// namespace of the test's own with an edge proxy given as a DNS name (`sips:edge.zorg.test`),
/// Kamailio on the host end of the veth pair (TLS, its certificate naming edge.zorg.test), and
/// dnsmasq from Debian inside the namespace as the resolver (port 53 on the namespace's
/// loopback; `ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf).
@Suite(.serialized, .enabled(if: NetworkNamespace.available && FileManager.default.isExecutableFile(atPath: dnsmasqPath),
                             "needs root, ip(8) and dnsmasq (apt-get install dnsmasq-base)"))
struct DNSResolutionDaemonTests {
    static let dnsmasq = dnsmasqPath
    static let domain = "edge.zorg.test"

    /// /etc/netns/NAME/resolv.conf naming the namespace's own loopback; removed afterwards.
    final class ResolverFile {
        let directory: String
        init(_ namespace: NetworkNamespace) throws {
            directory = "/etc/netns/\(namespace.name)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
                .write(toFile: "\(directory)/resolv.conf", atomically: true, encoding: .utf8)
        }
        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// dnsmasq in the foreground inside the namespace, answering only from its arguments.
    static func startDNS(_ namespace: NetworkNamespace, ttl: Int, records: [String]) throws -> (Process, LineRecorder) {
        try namespace.launch(dnsmasq, ["-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--pid-file=",
                                       "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53", "--user=root",
                                       "--local-ttl=\(ttl)", "--log-queries", "--log-facility=-"] + records)
    }

    /// SIGKILL, not SIGTERM: dnsmasq inherits the test thread's signal mask, in which SIGTERM
    /// is blocked, and would never exit (nothing of its state matters afterwards).
    static func stop(_ process: Process) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    static func status(_ directory: String) throws -> String {
        try spawnAndRead([ReinviteDaemonTests.Daemon.binaries.appendingPathComponent("beeldzorgctl").path, "status",
                          "--socket", "\(directory)/control.sock", "--json"])
    }

    static func accepted(_ kamailio: Kamailio) -> Int {
        kamailio.log.components(separatedBy: "REGISTER accepted for tablet").count - 1
    }

    /// The daemon's status as JSON (nil while the control socket does not answer).
    static func statusObject(_ directory: String) -> [String: Any]? {
        guard let text = try? status(directory) else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    /// Power-on in a home without internet: no DNS server answers, the edge proxy is a name.
    /// The daemon says READY=1, answers `status` naming the DNS problem, shows "no internet"
    /// within 5 s; a press then says so, queues the callback request and, when DNS comes, the
    /// tablet registers within 2 s (same process) and places the call by itself.
    @Test func noResolverAtPowerOnThenDNSComes() async throws {
        let namespace = try NetworkNamespace()
        defer { namespace.remove() }
        let resolver = try ResolverFile(namespace)
        _ = resolver
        try await Kamailio.withRunning(password: NetworkChangeTests.password, host: namespace.hostAddress,
                                       serverNames: "DNS:\(Self.domain)") { certificates, kamailio in
            let d = certificates.directory.path
            let configuration = try writeDaemonFiles(
                in: d, password: NetworkChangeTests.password, domain: Kamailio.realm, listenHost: "0.0.0.0",
                transport: "tls", edgeProxy: "sips:\(Self.domain)", caFile: certificates.caFile,
                posts: ["sip:post1@\(Kamailio.realm)"], deadlineSeconds: 300)
            // systemd's side of sd_notify: a datagram socket the daemon finds in NOTIFY_SOCKET
            // (a path, which `ip netns exec` does not hide, unlike an abstract name).
            let notify = try DatagramReceiver(filesystemIn: d)
            defer { notify.close() }
            let (daemon, lines) = try namespace.launch("/usr/bin/env", [
                "NOTIFY_SOCKET=\(notify.notifySocket)", DaemonNetworkChangeTests.daemon,
                "--config", configuration, "--console", "--log-level", "debug",
            ])
            let pid = daemon.processIdentifier
            func waitFor(_ what: String, timeout: Duration, _ condition: () throws -> Bool) async throws {
                guard try await poll(every: .milliseconds(50), timeout: timeout, { try condition() || !daemon.isRunning }),
                      daemon.isRunning
                else {
                    throw TimedOut(what: "\(what) (daemon running: \(daemon.isRunning)); daemon output:\n\(String(lines.text.suffix(5000)))\nKamailio:\n\(kamailio.log.suffix(3000))")
                }
            }
            // READY=1 without any DNS (it used to exit: "not a usable SIP URI", and restart every 3 s).
            var notifications: [String] = []
            try await waitFor("READY=1 on NOTIFY_SOCKET", timeout: .seconds(30)) {
                while let datagram = try notify.nextIfAny() { notifications.append(datagram) }
                return notifications.contains { $0.hasPrefix("READY=1") }
            }
            let ready = ContinuousClock.now
            // Status answers, names the problem, and the screen says "no internet", within 5 s.
            var report: [String: Any] = [:]
            try await waitFor("status naming DNS and the network down", timeout: .seconds(10)) {
                report = Self.statusObject(d) ?? [:]
                let faults = report["faults"] as? [String] ?? []
                return report["network"] as? Bool == false && faults.contains { $0.contains("DNS: no answer for _sips._tcp.\(Self.domain)") }
            }
            let noInternet = ContinuousClock.now - ready
            print("no DNS at power-on: READY → status says no network: \(noInternet)")
            #expect(noInternet <= .seconds(5), "\(report)")
            try await waitFor("the screen saying no internet", timeout: .seconds(5)) {
                lines.text.contains("[geen internet — ik blijf het proberen")
            }
            #expect(Self.accepted(kamailio) == 0)

            // A press offline: the client hears there is no internet, the callback request is
            // queued at once (the outbox, delivered when any path exists), no INVITE can leave.
            try Self.press(d)
            try await waitFor("the no_network prompt after the press", timeout: .seconds(10)) {
                lines.text.contains("🔊 Er is geen internet. Ik blijf het proberen.")
            }
            try await waitFor("a callback request in the outbox", timeout: .seconds(5)) {
                let call = Self.statusObject(d)?["call"] as? [String: Any]
                return call?["callbackPending"] as? Bool == true
            }
            let queued = try spawnAndRead(["/usr/bin/sqlite3", "-readonly", "\(d)/beeldzorg.sqlite",
                                           "SELECT reason FROM callbackRequest"])
            #expect(queued.contains("pressed without network"), "\(queued)")

            // DNS comes (SRV → edge1 → the veth's host end): registered within 2 s, same process,
            // and the call goes out by itself (the deadline is far off).
            let (dns, dnsLog) = try Self.startDNS(namespace, ttl: 60, records: [
                "--srv-host=_sips._tcp.\(Self.domain),edge1.zorg.test,\(kamailio.tlsPort),10,0",
                "--host-record=edge1.zorg.test,\(namespace.hostAddress)",
            ])
            defer { Self.stop(dns) }
            let dnsStarted = ContinuousClock.now
            try await waitFor("a REGISTER through the SRV target", timeout: .seconds(10)) { Self.accepted(kamailio) > 0 }
            let took = ContinuousClock.now - dnsStarted
            print("no DNS at power-on: registered \(took) after dnsmasq started")
            #expect(took <= .seconds(2), "took \(took); dnsmasq:\n\(dnsLog.text.suffix(2000))")
            #expect(daemon.isRunning && daemon.processIdentifier == pid)
            try await waitFor("the queued press's INVITE through the edge proxy, without a second press", timeout: .seconds(10)) {
                kamailio.log.contains("INVITE accepted contact")
            }
            try await waitFor("status registered", timeout: .seconds(5)) { try Self.status(d).contains("\"registered\"") }
            // The last good addresses are on disk for a boot without DNS.
            let cache = try String(contentsOfFile: "\(d)/edge-proxy-addresses", encoding: .utf8)
            #expect(cache.contains("\(namespace.hostAddress) \(kamailio.tlsPort)"), "\(cache)")
        }
    }

    /// Writes a press to the daemon's button FIFO.
    static func press(_ directory: String) throws {
        let fd = open("\(directory)/button", O_WRONLY | O_NONBLOCK)
        guard fd >= 0 else { throw CommandFailed(command: "button", output: String(cString: strerror(errno))) }
        defer { close(fd) }
        let bytes = Array("press\n".utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw CommandFailed(command: "button", output: "short write") }
    }

    @Test func srvTargetsAreTheFailoverSetAndAChangedRecordIsFollowed() async throws {
        let namespace = try NetworkNamespace()
        defer { namespace.remove() }
        let resolver = try ResolverFile(namespace)
        _ = resolver
        let certificates = try TestCertificates(serverNames: "DNS:\(Self.domain)")
        let first = try await Kamailio(certificates: certificates, password: NetworkChangeTests.password, host: namespace.hostAddress)
        defer { first.stop() }
        let second = try await Kamailio(certificates: certificates, password: NetworkChangeTests.password, host: namespace.hostAddress)
        defer { second.stop() }
        try await first.waitUntilReady()
        try await second.waitUntilReady()
        var (dns, dnsLog) = try Self.startDNS(namespace, ttl: 2, records: [
            "--srv-host=_sips._tcp.\(Self.domain),edge1.zorg.test,\(first.tlsPort),10,0",
            "--srv-host=_sips._tcp.\(Self.domain),edge2.zorg.test,\(second.tlsPort),20,0",
            "--host-record=edge1.zorg.test,\(namespace.hostAddress)",
            "--host-record=edge2.zorg.test,\(namespace.hostAddress)",
        ])
        defer { Self.stop(dns) }
        let d = certificates.directory.path
        let configuration = try writeDaemonFiles(
            in: d, password: NetworkChangeTests.password, domain: Kamailio.realm, listenHost: "0.0.0.0",
            transport: "tls", edgeProxy: "sips:\(Self.domain)", caFile: certificates.caFile,
            posts: ["sip:post1@\(Kamailio.realm)"])
        let (daemon, lines) = try namespace.launch(DaemonNetworkChangeTests.daemon,
                                                   ["--config", configuration, "--console", "--log-level", "debug"])
        func waitFor(_ what: String, timeout: Duration, _ condition: () throws -> Bool) async throws {
            guard try await poll(every: .milliseconds(50), timeout: timeout, condition) else {
                throw TimedOut(what: "\(what); daemon output:\n\(String(lines.text.suffix(5000)))\ndnsmasq:\n\(dnsLog.text.suffix(1500))")
            }
        }
        // Priority 10 first.
        try await waitFor("registered at the first SRV target", timeout: .seconds(15)) { Self.accepted(first) > 0 }
        #expect(Self.accepted(second) == 0)

        // The first dies: its connection closes, the flow moves to the priority-20 target.
        first.stop()
        try await waitFor("registered at the second SRV target", timeout: .seconds(10)) { Self.accepted(second) > 0 }

        // The records change (the first is back and the only target): once the TTL (2 s) has
        // run out the daemon follows them, without any network change.
        try first.start()
        try await first.waitUntilReady()
        let before = Self.accepted(first)
        Self.stop(dns)
        (dns, dnsLog) = try Self.startDNS(namespace, ttl: 2, records: [
            "--srv-host=_sips._tcp.\(Self.domain),edge1.zorg.test,\(first.tlsPort),10,0",
            "--host-record=edge1.zorg.test,\(namespace.hostAddress)",
        ])
        try await waitFor("registered at the changed record's target", timeout: .seconds(10)) { Self.accepted(first) > before }
        #expect(daemon.isRunning)
    }
}
