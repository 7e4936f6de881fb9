import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A child process started with an empty signal mask (through perl, as `Kamailio` does: the
/// test process blocks signals in its threads and a child inherits the mask) and stopped by
/// its PID, children included. Output goes to a log file in `directory`.
final class PeerProcess: @unchecked Sendable {
    let name: String
    let logURL: URL
    private let executable: String
    private let arguments: [String]
    private(set) var process: Process?

    /// `emptySignalMask`: start through perl with no signals blocked (C daemons such as
    /// Kamailio and baresip); false for our own daemon, which manages its signals itself.
    private let emptySignalMask: Bool

    init(name: String, executable: String, arguments: [String], logURL: URL, emptySignalMask: Bool = true) {
        self.name = name
        self.executable = executable
        self.arguments = arguments
        self.logURL = logURL
        self.emptySignalMask = emptySignalMask
    }

    func start() throws {
        precondition(process?.isRunning != true, "\(name) already running")
        if !FileManager.default.fileExists(atPath: logURL.path) {
            _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        }
        let log = try FileHandle(forWritingTo: logURL)
        log.seekToEndOfFile()
        let process = Process()
        if emptySignalMask {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
            process.arguments = ["-MPOSIX", "-e", "sigprocmask(SIG_SETMASK, POSIX::SigSet->new); exec @ARGV or die",
                                 executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
    }

    var isRunning: Bool { process?.isRunning == true }
    var pid: Int32? { process?.processIdentifier }

    /// SIGTERM by PID, SIGKILL (children first) if it has not gone after 10 s. Never waits
    /// without a bound: a test that fails must not hang.
    func stop() {
        guard let process, process.isRunning else { return }
        let pid = process.processIdentifier
        let children = Self.childPIDs(of: pid)
        kill(pid, SIGTERM)
        for _ in 0..<1000 where process.isRunning { usleep(10_000) }
        if process.isRunning {
            for child in children { kill(child, SIGKILL) }
            kill(pid, SIGKILL)
            for _ in 0..<300 where process.isRunning { usleep(10_000) }
        }
        for _ in 0..<300 where children.contains(where: { kill($0, 0) == 0 }) { usleep(10_000) }
    }

    static func childPIDs(of pid: Int32) -> [Int32] {
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
}

/// One event or command response from baresip's `ctrl_tcp` (netstring-framed JSON).
struct BaresipEvent: Sendable, CustomStringConvertible {
    /// `CALL_ESTABLISHED`, `CALL_MENC`, `CALL_CLOSED`, …; "response" for a command's answer.
    var type: String
    /// Every top-level field as text.
    var fields: [String: String]
    var description: String { "\(type) \(fields)" }
}

/// A real baresip (Debian `baresip-core`) with a private config dir on 127.0.0.1: UDP/TCP
/// SIP on a free port, `ctrl_tcp` for events and commands, `aubridge` as player and source (no
/// sound card, no busy loop), SRTP (`srtp-mand` unless told otherwise).
/// Started in the foreground and stopped by its PID.
final class Baresip: @unchecked Sendable {
    static let binary = "/usr/bin/baresip"

    let name: String
    let directory: URL
    let sipPort: Int
    let controlPort: Int
    private let peer: PeerProcess
    private var control: (any Channel)?
    private(set) var events: Recorder<BaresipEvent>?
    private let continuation: AsyncStream<BaresipEvent>.Continuation
    private let stream: AsyncStream<BaresipEvent>

    /// `account`: the accounts line after the address, e.g. `<sip:centrale@127.0.0.1>;regint=0`.
    /// The defaults make a centrale post: auto-answer, mandatory SRTP, no registration.
    init(name: String, account: String? = nil, mediaEncryption: String = "srtp-mand") async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary),
                     "baresip is not installed: apt-get install baresip-core")
        self.name = name
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("baresip-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // baresip listens UDP and TCP on the SIP port and TLS on the port after it.
        var sip = try await freePort(udp: true)
        while true {
            let tcpFree = await Self.tcpFree(sip)
            let tlsFree = await Self.tcpFree(sip + 1)
            if tcpFree && tlsFree { break }
            sip = try await freePort(udp: true)
        }
        sipPort = sip
        var control = try await freePort()
        while control == sip || control == sip + 1 { control = try await freePort() }
        controlPort = control
        let accountLine = account ?? "<sip:centrale@127.0.0.1>;regint=0;answermode=auto"
        try """
        poll_method\t\tepoll
        sip_listen\t\t127.0.0.1:\(sipPort)
        net_interface\t\t127.0.0.1
        audio_player\t\taubridge,nil
        audio_source\t\taubridge,nil
        audio_alert\t\taubridge,nil
        audio_srate\t\t8000-48000
        video_display\t\tnone
        module_path\t\t/usr/lib/baresip/modules
        module\t\t\tg711.so
        module\t\t\topus.so
                module\t\t\taubridge.so
        module\t\t\tsrtp.so
        module_app\t\taccount.so
        module_app\t\tmenu.so
        module_app\t\tctrl_tcp.so
        ctrl_tcp_listen\t\t127.0.0.1:\(controlPort)
        rtp_ports\t\t30000-39999

        """.write(to: directory.appendingPathComponent("config"), atomically: true, encoding: .utf8)
        try "\(accountLine);mediaenc=\(mediaEncryption);audio_codecs=opus/48000/2,PCMA,PCMU\n"
            .write(to: directory.appendingPathComponent("accounts"), atomically: true, encoding: .utf8)
        try "".write(to: directory.appendingPathComponent("contacts"), atomically: true, encoding: .utf8)
        peer = PeerProcess(name: "baresip \(name)", executable: Self.binary, arguments: ["-f", directory.path],
                           logURL: directory.appendingPathComponent("baresip.log"))
        (stream, continuation) = AsyncStream<BaresipEvent>.makeStream()
    }

    var uri: String { "sip:centrale@127.0.0.1:\(sipPort)" }
    var log: String { peer.log }
    var isRunning: Bool { peer.isRunning }

    /// Starts the process and connects to `ctrl_tcp` (which is also how we know it is ready).
    func start() async throws {
        try peer.start()
        events = Recorder(stream)
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard peer.isRunning else { throw CommandFailed(command: "baresip \(name)", output: peer.log) }
            let handler = NetstringHandler(continuation: continuation)
            let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(200))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
                }
            if let channel = try? await bootstrap.connect(host: "127.0.0.1", port: controlPort).get() {
                control = channel
                return
            }
            try await Task.sleep(for: .milliseconds(30))
        }
        throw TimedOut(what: "baresip \(name) ctrl_tcp")
    }

    /// Sends a `ctrl_tcp` command (`dial`, `hangup`, `accept`, `hold`, …).
    func command(_ command: String, _ parameters: String = "") async throws {
        guard let control else { throw CommandFailed(command: command, output: "not connected") }
        let json = try JSONSerialization.data(withJSONObject: ["command": command, "params": parameters,
                                                               "token": UUID().uuidString])
        var buffer = control.allocator.buffer(capacity: json.count + 16)
        buffer.writeString("\(json.count):")
        buffer.writeBytes(json)
        buffer.writeString(",")
        try await control.writeAndFlush(buffer)
    }

    /// The first event of `type` since the start, waiting for it if need be (events are not
    /// consumed: baresip's order, e.g. CALL_MENC before CALL_ESTABLISHED, does not matter).
    @discardableResult
    func next(_ type: String, timeout: Duration = .seconds(10)) async throws -> BaresipEvent {
        guard let events else { throw TimedOut(what: "\(name): not started") }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let event = await events.all().first(where: { $0.type == type }) { return event }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw CommandFailed(command: "waiting for \(type) from baresip \(name)",
                            output: "events: \(await events.all())\nlog:\n\(peer.log.suffix(3000))")
    }

    func all() async -> [BaresipEvent] { await events?.all() ?? [] }

    func stop() {
        if let control { control.close(promise: nil) }
        control = nil
        peer.stop()
        continuation.finish()
    }

    deinit {
        stop()
        if ProcessInfo.processInfo.environment["BEELDZORG_KEEP_PEER_DIRS"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    private static func tcpFree(_ port: Int) async -> Bool {
        guard let channel = try? await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: port).get()
        else { return false }
        try? await channel.close()
        return true
    }
}

/// Splits `len:payload,` netstrings and decodes each payload as a JSON object.
private final class NetstringHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let continuation: AsyncStream<BaresipEvent>.Continuation
    var pending: [UInt8] = []

    init(continuation: AsyncStream<BaresipEvent>.Continuation) { self.continuation = continuation }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pending += Array(unwrapInboundIn(data).readableBytesView)
        while let colon = pending.firstIndex(of: UInt8(ascii: ":")),
              let length = Int(String(decoding: pending[..<colon], as: UTF8.self)),
              pending.count >= colon + 1 + length + 1
        {
            let payload = Array(pending[(colon + 1)..<(colon + 1 + length)])
            pending.removeFirst(colon + 1 + length + 1)
            guard let object = try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any] else { continue }
            var fields: [String: String] = [:]
            for (key, value) in object { fields[key] = "\(value)" }
            let type = object["type"] as? String ?? (object["response"] != nil ? "response" : "unknown")
            continuation.yield(BaresipEvent(type: type, fields: fields))
        }
    }
}

/// Kamailio as the centrale's proxy: TLS (and TCP) towards the tablet with digest REGISTER, UDP
/// towards the baresip posts, and `dispatcher` in front of the posts. A request to
/// `sip:centrale@beeldzorg.test` goes to dispatcher set 1 in priority order; a post that sends
/// nothing within `failoverMilliseconds` (dead, or an unused port) or answers 408/5xx is
/// replaced by the next one (`failure_route`). A request to `sip:ringall@beeldzorg.test` is
/// forked in parallel to every post of set 1. Other requests for 127.0.0.1 go where their
/// request-URI says; other users of the realm are looked up in the location table.
final class CentraleProxy: @unchecked Sendable {
    static let realm = "beeldzorg.test"

    let directory: URL
    let udpPort: Int
    let tlsPort: Int
    let tcpPort: Int
    private let peer: PeerProcess

    var tlsURI: String { "sip:127.0.0.1:\(tlsPort);transport=tls" }
    var udpURI: String { "sip:127.0.0.1:\(udpPort)" }
    var log: String { peer.log }

    /// `posts`: (URI, priority); higher priority is tried first.
    init(certificates: TestCertificates, password: String, posts: [(uri: String, priority: Int)],
         failoverMilliseconds: Int = 1000) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Kamailio.binary), "kamailio is not installed")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("centrale-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        udpPort = try await freePort(udp: true)
        tcpPort = try await freePort()
        var tls = try await freePort()
        while tls == tcpPort { tls = try await freePort() }
        tlsPort = tls
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
        try posts.map { "1 \($0.uri) 0 \($0.priority)\n" }.joined()
            .write(toFile: "\(d)/dispatcher.list", atomically: true, encoding: .utf8)
        let forks = posts.dropFirst().map { "append_branch(\"\($0.uri.replacingOccurrences(of: "sip:", with: "sip:centrale@"))\");" }
            .joined(separator: " ")
        let first = posts.first.map { $0.uri.replacingOccurrences(of: "sip:", with: "sip:centrale@") } ?? "sip:nobody@127.0.0.1"
        try """
        #!KAMAILIO
        debug=2
        log_stderror=yes
        children=2
        tcp_children=2
        auto_aliases=no
        enable_tls=yes
        listen=udp:127.0.0.1:\(udpPort)
        listen=tcp:127.0.0.1:\(tcpPort)
        listen=tls:127.0.0.1:\(tlsPort)
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
        loadmodule "dispatcher.so"

        modparam("ctl", "binrpc", "unix:\(d)/kamailio_ctl")
        modparam("tls", "config", "\(d)/tls.cfg")
        modparam("usrloc", "db_mode", 0)
        modparam("registrar", "max_expires", 3600)
        modparam("registrar", "received_avp", "$avp(RECEIVED)")
        modparam("nathelper", "received_avp", "$avp(RECEIVED)")
        modparam("rr", "enable_double_rr", 1)
        modparam("dispatcher", "list_file", "\(d)/dispatcher.list")
        modparam("dispatcher", "flags", 2)

        request_route {
            xlog("L_NOTICE", "request $rm $ru from $si:$sp over $proto\\n");
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
            remove_hf("Route");
            if (proto == TCP || proto == TLS) { add_contact_alias(); }
            record_route();
            if (is_method("INVITE") && $rd == "\(Self.realm)" && $rU == "centrale") {
                t_set_fr(30000, \(failoverMilliseconds));
                if (!ds_select_dst("1", "8")) { sl_send_reply("503", "No post"); exit; }
                xlog("L_NOTICE", "centrale call to post $du\\n");
                t_on_failure("NEXT_POST");
                t_relay();
                exit;
            }
            if (is_method("INVITE") && $rd == "\(Self.realm)" && $rU == "ringall") {
                $ru = "\(first)";
                \(forks)
                xlog("L_NOTICE", "ring-all fork\\n");
                t_relay();
                exit;
            }
            if ($rd == "127.0.0.1") { t_relay(); exit; }
            if (!lookup("location")) {
                sl_send_reply("404", "Not Found");
                exit;
            }
            t_relay();
        }

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
        """.write(toFile: "\(d)/kamailio.cfg", atomically: true, encoding: .utf8)
        peer = PeerProcess(name: "kamailio", executable: Kamailio.binary,
                           arguments: ["-DD", "-E", "-f", "\(d)/kamailio.cfg", "-Y", d, "-P", "\(d)/kamailio.pid",
                                       "-m", "64", "-M", "8", "-w", d],
                           logURL: directory.appendingPathComponent("kamailio.log"))
        try peer.start()
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard peer.isRunning else { throw CommandFailed(command: "kamailio", output: peer.log) }
            if await Self.accepts(tlsPort) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TimedOut(what: "kamailio to listen")
    }

    private static func accepts(_ port: Int) async -> Bool {
        guard let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(200)).connect(host: "127.0.0.1", port: port).get()
        else { return false }
        try? await channel.close()
        return true
    }

    func stop() { peer.stop() }

    deinit {
        stop()
        if ProcessInfo.processInfo.environment["BEELDZORG_KEEP_PEER_DIRS"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }
}
