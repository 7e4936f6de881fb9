import Foundation
import NIOCore
import NIOPosix
import Testing

/// Certificates made with `openssl` at test time in a temp dir: a CA, a server certificate
/// for localhost/127.0.0.1 signed by it, and an unrelated second CA for the "wrong CA" test.
/// Nothing here is committed; the directory goes away with the object.
final class TestCertificates {
    let directory: URL
    var caFile: String { directory.appendingPathComponent("ca.crt").path }
    var wrongCAFile: String { directory.appendingPathComponent("wrong-ca.crt").path }
    var serverCertificate: String { directory.appendingPathComponent("server.crt").path }
    var serverKey: String { directory.appendingPathComponent("server.key").path }

    /// `serverNames` is the server certificate's subjectAltName list.
    init(serverNames: String = "DNS:localhost,IP:127.0.0.1") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("certs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let d = directory.path
        try run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                                     "-subj", "/CN=Beeldzorg Test CA", "-keyout", "\(d)/ca.key", "-out", "\(d)/ca.crt"])
        try run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                                     "-subj", "/CN=Someone Else CA", "-keyout", "\(d)/wrong-ca.key",
                                     "-out", "\(d)/wrong-ca.crt"])
        try run("/usr/bin/openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                                     "-keyout", "\(d)/server.key", "-out", "\(d)/server.csr"])
        try "subjectAltName=\(serverNames)\nextendedKeyUsage=serverAuth\n"
            .write(toFile: "\(d)/ext.cnf", atomically: true, encoding: .utf8)
        try run("/usr/bin/openssl", ["x509", "-req", "-in", "\(d)/server.csr", "-CA", "\(d)/ca.crt",
                                     "-CAkey", "\(d)/ca.key", "-CAcreateserial", "-days", "2",
                                     "-extfile", "\(d)/ext.cnf", "-out", "\(d)/server.crt"])
    }

    deinit { try? FileManager.default.removeItem(at: directory) }
}

/// Runs a short command to completion; throws with its stderr when it fails.
func run(_ path: String, _ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let errors = Pipe()
    process.standardOutput = FileHandle.nullDevice
    process.standardError = errors
    try process.run()
    let output = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CommandFailed(command: ([path] + arguments).joined(separator: " "),
                            output: String(decoding: output, as: UTF8.self))
    }
}

struct CommandFailed: Error, CustomStringConvertible {
    var command: String
    var output: String
    var description: String { "\(command) failed: \(output)" }
}

/// A TCP or UDP port that was free a moment ago (bound to 127.0.0.1 and closed).
func freePort(udp: Bool = false) async throws -> Int {
    let channel: any Channel
    if udp {
        channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
    } else {
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
    }
    let port = channel.localAddress!.port!
    try await channel.close()
    return port
}

/// A real Kamailio (Debian `kamailio`, `kamailio-tls-modules`) as registrar and proxy: UDP, TCP
/// and TLS on free ports of `host`, digest auth against one fixed password
/// (`pv_www_authenticate`, no database), usrloc in memory, nathelper so TCP/TLS clients are
/// reached over their own connection. Its routing is the edge proxy's (`.edgeProxy`) or the
/// centrale's (`.centrale`, see `CentraleProxy`); both come from one `KamailioConfiguration`.
/// Started in the foreground through `PeerProcess`, stopped by its PID with bounded waits.
///
/// Kamailio cannot be told to bind port 0 and say which port it got, so its ports come from
/// a probe (`freePort`) and another test may take one in between. `waitUntilReady` notices:
/// Kamailio then logs "Address already in use" and exits, and it is started again on new ports
/// (before anyone was given the ports: they are final once `waitUntilReady` has returned).
final class Kamailio: @unchecked Sendable {
    static let realm = "beeldzorg.test"
    static let binary = "/usr/sbin/kamailio"
    /// Logged by the ctl module's process, which Kamailio forks only once every listening
    /// socket is bound: a connection accepted before it may be another program's.
    static let readyMarker = "io_listen_loop"

    let directory: URL
    private(set) var udpPort: Int
    private(set) var tcpPort: Int
    private(set) var tlsPort: Int
    let password: String
    /// The address it listens on: 127.0.0.1, or the host end of a test's veth pair.
    let host: String
    private let role: KamailioConfiguration.Role
    private let peer: PeerProcess
    /// The ports have been handed out (`waitUntilReady` returned): a restart keeps them.
    private var portsFinal = false
    /// How much of the log came before the current start.
    private var logOffset = 0

    var udpURI: String { "sip:\(host):\(udpPort)" }
    var tcpURI: String { "sip:\(host):\(tcpPort);transport=tcp" }
    var tlsURI: String { "sip:\(host):\(tlsPort);transport=tls" }
    var pid: Int32? { peer.pid }

    /// `algorithm`: the digest algorithm of its challenges. `stun`: whether it answers STUN on
    /// its UDP port (the `stun` module), for RFC 5626 UDP keepalives.
    convenience init(certificates: TestCertificates, password: String, algorithm: String = "MD5",
                     host: String = "127.0.0.1", stun: Bool = true) async throws {
        try await self.init(certificates: certificates, password: password, host: host, name: "kamailio",
                            role: .edgeProxy(algorithm: algorithm, stun: stun))
    }

    /// Writes its configuration and starts it (`waitUntilReady` waits for it to listen).
    init(certificates: TestCertificates, password: String, host: String, name: String,
         role: KamailioConfiguration.Role) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary),
                     "kamailio is not installed: apt-get install kamailio kamailio-tls-modules")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        (udpPort, tcpPort, tlsPort) = try await Self.probePorts()
        self.password = password
        self.host = host
        self.role = role
        let d = directory.path
        try """
        [server:default]
        method = TLSv1.2+
        verify_certificate = no
        require_certificate = no
        private_key = \(certificates.serverKey)
        certificate = \(certificates.serverCertificate)

        [client:default]
        verify_certificate = no
        require_certificate = no
        """.write(toFile: "\(d)/tls.cfg", atomically: true, encoding: .utf8)
        if case .centrale(let posts, _) = role {
            try posts.map { "1 \($0.uri) 0 \($0.priority)\n" }.joined()
                .write(toFile: "\(d)/dispatcher.list", atomically: true, encoding: .utf8)
        }
        peer = PeerProcess(name: name, executable: Self.binary,
                           arguments: ["-DD", "-E", "-f", "\(d)/kamailio.cfg", "-Y", d, "-P", "\(d)/kamailio.pid",
                                       "-m", "64", "-M", "8", "-w", d],
                           logURL: directory.appendingPathComponent("kamailio.log"), terminationGrace: .seconds(3))
        try writeConfiguration()
        try start()
    }

    private static func probePorts() async throws -> (udp: Int, tcp: Int, tls: Int) {
        let udp = try await freePort(udp: true)
        let tcp = try await freePort()
        var tls = try await freePort()
        while tls == tcp { tls = try await freePort() }
        return (udp, tcp, tls)
    }

    private func writeConfiguration() throws {
        let configuration = KamailioConfiguration(host: host, udpPort: udpPort, tcpPort: tcpPort, tlsPort: tlsPort,
                                                  directory: directory.path, realm: Self.realm, password: password, role: role)
        try configuration.text.write(toFile: "\(directory.path)/kamailio.cfg", atomically: true, encoding: .utf8)
    }

    /// Starts (or restarts) the process; its log continues the same file.
    func start() throws {
        logOffset = peer.log.utf8.count
        try peer.start()
    }

    /// What this start has logged so far.
    private var logSinceStart: Substring {
        let log = peer.log
        let utf8 = log.utf8
        return Substring(utf8[utf8.index(utf8.startIndex, offsetBy: min(logOffset, utf8.count))...])
    }

    /// Waits until it listens on its TCP and TLS ports. On the first start, a port another
    /// program took since the probe gets new ports and a new start (up to three times).
    func waitUntilReady() async throws {
        for attempt in 1...3 {
            let deadline = ContinuousClock.now + .seconds(10)
            var portTaken = false
            while ContinuousClock.now < deadline {
                let log = logSinceStart
                if log.contains("Address already in use") {
                    portTaken = true
                    break
                }
                guard peer.isRunning else { throw CommandFailed(command: "kamailio", output: String(log)) }
                if log.contains(Self.readyMarker), await accepts(tcpPort), await accepts(tlsPort), peer.isRunning {
                    portsFinal = true
                    return
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            guard portTaken else { throw TimedOut(what: "kamailio to listen") }
            guard !portsFinal, attempt < 3 else {
                throw CommandFailed(command: "kamailio (a port was taken)", output: String(logSinceStart))
            }
            peer.stop()
            (udpPort, tcpPort, tlsPort) = try await Self.probePorts()
            try writeConfiguration()
            try start()
        }
    }

    private func accepts(_ port: Int) async -> Bool {
        guard let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(200)).connect(host: host, port: port).get()
        else { return false }
        try? await channel.close()
        return true
    }

    /// Stops the process and its children by PID; every wait is bounded (`PeerProcess.stop`),
    /// so a test that failed half-way cannot hang here with a Kamailio left behind.
    func stop() { peer.stop() }

    var log: String { peer.log }

    deinit {
        stop()
        if ProcessInfo.processInfo.environment["BEELDZORG_KEEP_PEER_DIRS"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }
}

/// The text of a test Kamailio's `kamailio.cfg`. The registrar part (digest REGISTER, usrloc,
/// nathelper, in-dialog and CANCEL handling) is common; `role` adds what differs:
/// - `.edgeProxy`: INVITEs are authenticated too (`INVITE accepted contact … body …` is
///   logged) and go to the location table; optionally STUN on the UDP port.
/// - `.centrale`: no INVITE authentication; `sip:centrale@realm` goes to dispatcher set 1 with
///   failover (`failure_route[NEXT_POST]`), `sip:ringall@realm` is forked to every post,
///   requests for 127.0.0.1 go where their request-URI says; the rest is looked up.
struct KamailioConfiguration {
    enum Role {
        case edgeProxy(algorithm: String, stun: Bool)
        /// `posts`: (URI, priority), higher first; `failoverMilliseconds`: how long a post may
        /// stay silent before the next one is tried.
        case centrale(posts: [(uri: String, priority: Int)], failoverMilliseconds: Int)
    }

    var host: String
    var udpPort: Int
    var tcpPort: Int
    var tlsPort: Int
    /// Holds tls.cfg, dispatcher.list and the ctl socket.
    var directory: String
    var realm: String
    var password: String
    var role: Role

    var text: String {
        let d = directory
        var modules = ""
        var parameters = ""
        var invite = ""
        var routing = ""
        var routes = ""
        switch role {
        case .edgeProxy(let algorithm, let stun):
            modules = stun ? "loadmodule \"stun.so\"" : ""
            parameters = "modparam(\"auth\", \"algorithm\", \"\(algorithm)\")"
            invite = """
                if (is_method("INVITE")) {
                    if (!pv_proxy_authenticate("\(realm)", "\(password)", "0")) {
                        proxy_challenge("\(realm)", "1");
                        exit;
                    }
                    consume_credentials();
                    xlog("L_NOTICE", "INVITE accepted contact $ct body $rb\\n");
                }
            """
        case .centrale(let posts, let failoverMilliseconds):
            let centrale = { (uri: String) in uri.replacingOccurrences(of: "sip:", with: "sip:centrale@") }
            let forks = posts.dropFirst().map { "append_branch(\"\(centrale($0.uri))\");" }.joined(separator: " ")
            let first = posts.first.map { centrale($0.uri) } ?? "sip:nobody@127.0.0.1"
            modules = "loadmodule \"dispatcher.so\""
            parameters = """
            modparam("dispatcher", "list_file", "\(d)/dispatcher.list")
            modparam("dispatcher", "flags", 2)
            """
            routing = """
                if (is_method("INVITE") && $rd == "\(realm)" && $rU == "centrale") {
                    t_set_fr(30000, \(failoverMilliseconds));
                    if (!ds_select_dst("1", "8")) { sl_send_reply("503", "No post"); exit; }
                    xlog("L_NOTICE", "centrale call to post $du\\n");
                    t_on_failure("NEXT_POST");
                    t_relay();
                    exit;
                }
                if (is_method("INVITE") && $rd == "\(realm)" && $rU == "ringall") {
                    $ru = "\(first)";
                    \(forks)
                    xlog("L_NOTICE", "ring-all fork\\n");
                    t_relay();
                    exit;
                }
                if ($rd == "127.0.0.1") { t_relay(); exit; }
            """
            routes = """
            # A 2xx from the tablet (e.g. to a post's re-INVITE) refreshes its Contact: mark it
            # with the alias of its TLS connection too, so the next request reuses the flow.
            onreply_route {
                if ((proto == TCP || proto == TLS) && status =~ "^2") { add_contact_alias(); }
            }

            failure_route[NEXT_POST] {
                if (t_is_canceled()) { exit; }
                if (t_check_status("408|5[0-9][0-9]") || t_branch_timeout()) {
                    if (ds_next_dst()) {
                        xlog("L_NOTICE", "post failed; next post $du\\n");
                        t_set_fr(30000, \(failoverMilliseconds));
                        t_on_failure("NEXT_POST");
                        t_relay();
                        exit;
                    }
                }
            }
            """
        }
        return """
        #!KAMAILIO
        debug=2
        log_stderror=yes
        children=2
        tcp_children=2
        auto_aliases=no
        enable_tls=yes
        listen=udp:\(host):\(udpPort)
        listen=tcp:\(host):\(tcpPort)
        listen=tls:\(host):\(tlsPort)
        tcp_connection_lifetime=3605
        tcp_accept_no_cl=yes
        mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"

        loadmodule "kex.so"
        loadmodule "corex.so"
        loadmodule "tm.so"
        loadmodule "sl.so"
        loadmodule "rr.so"
        loadmodule "pv.so"
        loadmodule "maxfwd.so"
        loadmodule "usrloc.so"
        loadmodule "registrar.so"
        loadmodule "textops.so"
        loadmodule "siputils.so"
        loadmodule "xlog.so"
        loadmodule "auth.so"
        loadmodule "nathelper.so"
        loadmodule "ctl.so"
        loadmodule "tls.so"
        \(modules)

        modparam("ctl", "binrpc", "unix:\(d)/kamailio_ctl")
        modparam("tls", "config", "\(d)/tls.cfg")
        modparam("usrloc", "db_mode", 0)
        modparam("registrar", "max_expires", 3600)
        modparam("registrar", "received_avp", "$avp(RECEIVED)")
        modparam("nathelper", "received_avp", "$avp(RECEIVED)")
        modparam("rr", "enable_double_rr", 1)
        \(parameters)

        request_route {
            xlog("L_NOTICE", "request $rm $ru from $si:$sp over $proto\\n");
            if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
            if (is_method("REGISTER")) {
                if (!pv_www_authenticate("\(realm)", "\(password)", "0")) {
                    www_challenge("\(realm)", "1");
                    exit;
                }
                xlog("L_NOTICE", "REGISTER accepted for $au contact $ct\\n");
                fix_nated_register();
                if (!save("location")) { sl_reply_error(); }
                exit;
            }
            if (has_totag()) {
                if (loose_route()) {
                    handle_ruri_alias();
                    t_relay();
                    exit;
                }
                if (is_method("ACK")) {
                    if (t_check_trans()) { t_relay(); }
                    exit;
                }
                sl_send_reply("404", "Not here");
                exit;
            }
            if (is_method("CANCEL")) {
                if (t_check_trans()) { t_relay(); }
                exit;
            }
        \(invite)
            remove_hf("Route");
            if (proto == TCP || proto == TLS) { add_contact_alias(); }
            record_route();
        \(routing)
            if (!lookup("location")) {
                sl_send_reply("404", "Not Found");
                exit;
            }
            t_relay();
        }

        \(routes)
        """
    }
}

extension Kamailio {
    /// Fresh certificates (the server's naming `serverNames`) and a Kamailio (edge-proxy role)
    /// that is ready, for `body`; it is stopped afterwards, also when `body` throws.
    static func withRunning<T>(
        password: String, algorithm: String = "MD5", host: String = "127.0.0.1", stun: Bool = true,
        serverNames: String = "DNS:localhost,IP:127.0.0.1", _ body: (TestCertificates, Kamailio) async throws -> T
    ) async throws -> T {
        let certificates = try TestCertificates(serverNames: serverNames)
        let kamailio = try await Kamailio(certificates: certificates, password: password, algorithm: algorithm, host: host,
                                          stun: stun)
        defer { kamailio.stop() }
        try await kamailio.waitUntilReady()
        return try await body(certificates, kamailio)
    }
}
