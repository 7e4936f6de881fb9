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

/// A real Kamailio (Debian `kamailio`, `kamailio-tls-modules`) as registrar and proxy on
/// 127.0.0.1: UDP, TCP and TLS on free ports, digest auth against one fixed password
/// (`pv_www_authenticate`, no database), usrloc in memory, nathelper so TCP/TLS clients are
/// reached over their own connection. Started in the foreground, stopped by its PID.
final class Kamailio {
    static let realm = "beeldzorg.test"
    static let binary = "/usr/sbin/kamailio"

    let directory: URL
    let udpPort: Int
    let tcpPort: Int
    let tlsPort: Int
    let password: String
    let algorithm: String
    /// The address it listens on: 127.0.0.1, or the host end of a test's veth pair.
    let host: String
    /// Whether it answers STUN on its UDP port (the `stun` module), for RFC 5626 UDP keepalives.
    let stun: Bool
    private(set) var process: Process?
    private let logURL: URL

    var udpURI: String { "sip:\(host):\(udpPort)" }
    var tcpURI: String { "sip:\(host):\(tcpPort);transport=tcp" }
    var tlsURI: String { "sip:\(host):\(tlsPort);transport=tls" }

    init(certificates: TestCertificates, password: String, algorithm: String = "MD5", host: String = "127.0.0.1",
         stun: Bool = true) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary),
                     "kamailio is not installed: apt-get install kamailio kamailio-tls-modules")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("kamailio-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        udpPort = try await freePort(udp: true)
        tcpPort = try await freePort()
        var tls = try await freePort()
        while tls == tcpPort { tls = try await freePort() }
        tlsPort = tls
        self.password = password
        self.algorithm = algorithm
        self.host = host
        self.stun = stun
        logURL = directory.appendingPathComponent("kamailio.log")
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
        try config(directory: d).write(toFile: "\(d)/kamailio.cfg", atomically: true, encoding: .utf8)
        try start()
    }

    private func config(directory d: String) -> String {
        """
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
        \(stun ? "loadmodule \"stun.so\"" : "")

        modparam("ctl", "binrpc", "unix:\(d)/kamailio_ctl")
        modparam("tls", "config", "\(d)/tls.cfg")
        modparam("usrloc", "db_mode", 0)
        modparam("registrar", "max_expires", 3600)
        modparam("registrar", "received_avp", "$avp(RECEIVED)")
        modparam("nathelper", "received_avp", "$avp(RECEIVED)")
        modparam("auth", "algorithm", "\(algorithm)")
        modparam("rr", "enable_double_rr", 1)

        request_route {
            xlog("L_NOTICE", "request $rm from $si:$sp over $proto\\n");
            if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
            if (is_method("REGISTER")) {
                if (!pv_www_authenticate("\(Self.realm)", "\(password)", "0")) {
                    www_challenge("\(Self.realm)", "1");
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
            if (is_method("INVITE")) {
                if (!pv_proxy_authenticate("\(Self.realm)", "\(password)", "0")) {
                    proxy_challenge("\(Self.realm)", "1");
                    exit;
                }
                consume_credentials();
                xlog("L_NOTICE", "INVITE accepted contact $ct body $rb\\n");
            }
            remove_hf("Route");
            if (proto == TCP || proto == TLS) { add_contact_alias(); }
            record_route();
            if (!lookup("location")) {
                sl_send_reply("404", "Not Found");
                exit;
            }
            t_relay();
        }
        """
    }

    /// Starts (or restarts) the process and waits until its TCP and TLS ports accept.
    func start() throws {
        precondition(process?.isRunning != true, "Kamailio already running")
        if !FileManager.default.fileExists(atPath: logURL.path) {
            _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        }
        let log = try FileHandle(forWritingTo: logURL)
        log.seekToEndOfFile()
        let process = Process()
        // The test process runs with signals blocked in its threads and a spawned child
        // inherits that mask, so Kamailio would ignore SIGTERM: start it through perl with an
        // empty mask (perl-base is essential on Debian).
        process.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
        process.arguments = ["-MPOSIX", "-e", "sigprocmask(SIG_SETMASK, POSIX::SigSet->new); exec @ARGV or die",
                             Self.binary, "-DD", "-E", "-f", directory.appendingPathComponent("kamailio.cfg").path,
                             "-Y", directory.path, "-P", directory.appendingPathComponent("kamailio.pid").path,
                             "-m", "64", "-M", "8", "-w", directory.path]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
    }

    func waitUntilReady() async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard process?.isRunning == true else { throw CommandFailed(command: "kamailio", output: log) }
            if await accepts(tcpPort), await accepts(tlsPort) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TimedOut(what: "kamailio to listen")
    }

    private func accepts(_ port: Int) async -> Bool {
        guard let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(200)).connect(host: host, port: port).get()
        else { return false }
        try? await channel.close()
        return true
    }

    /// Stops the process by its PID and waits for it.
    func stop() {
        guard let process, process.isRunning else { return }
        let pid = process.processIdentifier
        let children = childPIDs(of: pid)
        kill(pid, SIGTERM)
        for _ in 0..<300 where process.isRunning { usleep(10_000) }
        if process.isRunning {
            // Not expected; never leave a Kamailio behind: its children by PID, then itself.
            for child in children { kill(child, SIGKILL) }
            kill(pid, SIGKILL)
        }
        process.waitUntilExit()
        for _ in 0..<300 where children.contains(where: { kill($0, 0) == 0 }) { usleep(10_000) }
    }

    /// PIDs whose parent is `pid`, from /proc.
    private func childPIDs(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let child = Int32(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")")
            else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == pid ? child : nil
        }
    }

    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
