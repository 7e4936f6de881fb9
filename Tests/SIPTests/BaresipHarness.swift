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
    /// How long `stop` waits after SIGTERM before it kills.
    private let terminationGrace: Duration

    init(name: String, executable: String, arguments: [String], logURL: URL, emptySignalMask: Bool = true,
         terminationGrace: Duration = .seconds(10)) {
        self.name = name
        self.terminationGrace = terminationGrace
        self.executable = executable
        self.arguments = arguments
        self.logURL = logURL
        self.emptySignalMask = emptySignalMask
    }

    func start() throws {
        // Not `process.isRunning`: Foundation may notice a stopped process's exit late.
        precondition(process.map { Self.isAlive($0.processIdentifier) } != true, "\(name) already running")
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

    /// SIGTERM by PID; if it has not gone after `terminationGrace`, or left children behind,
    /// SIGKILL to its process group (when it leads one, as Kamailio does here: its children
    /// stay in the group even once re-parented, and may not exist yet when a test fails
    /// during Kamailio's start-up) or, without a group of its own, to the
    /// children it had and itself. Every wait is bounded: a test that fails must not hang. A
    /// zombie counts as gone: its exit may be noticed late by Foundation, and orphans are not
    /// reaped on this machine (pid 1 does not wait for them).
    func stop() {
        guard let process, process.isRunning else { return }
        let pid = process.processIdentifier
        let ownGroup = getpgid(pid) == pid
        let children = Self.childPIDs(of: pid)
        func leftOver() -> Bool {
            Self.isAlive(pid) || (ownGroup ? !Self.groupMembers(pid).isEmpty : children.contains(where: Self.isAlive))
        }
        kill(pid, SIGTERM)
        Self.wait(upTo: terminationGrace) { !Self.isAlive(pid) }
        if leftOver() {
            if ownGroup {
                kill(-pid, SIGKILL)
            } else {
                for child in children { kill(child, SIGKILL) }
                kill(pid, SIGKILL)
            }
        }
        Self.wait(upTo: .seconds(3)) { !leftOver() }
    }

    /// SIGKILL by PID, as a power cut or a crash would end it: no goodbye of any kind (no BYE,
    /// no RTCP BYE). Waits (bounded) until it is gone.
    func killAbruptly() {
        guard let process, process.isRunning else { return }
        let pid = process.processIdentifier
        kill(pid, SIGKILL)
        Self.wait(upTo: .seconds(3)) { !Self.isAlive(pid) }
    }

    private static func wait(upTo limit: Duration, until done: () -> Bool) {
        let deadline = ContinuousClock.now + limit
        while !done() && ContinuousClock.now < deadline { usleep(10_000) }
    }

    /// State, parent and process group of `pid` from /proc/PID/stat (read with read(2): the
    /// file's size is 0 to stat(2)).
    private static func stat(_ pid: Int32) -> (state: Character, parent: Int32, group: Int32)? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = read(fd, &buffer, buffer.count)
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[..<count], as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 2, let state = fields[0].first, let parent = Int32(fields[1]), let group = Int32(fields[2])
        else { return nil }
        return (state, parent, group)
    }

    /// Running (not a zombie, not gone).
    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = stat(pid) else { return false }
        return stat.state != "Z" && stat.state != "X"
    }

    private static func pids() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
    }

    static func childPIDs(of pid: Int32) -> [Int32] {
        pids().filter { stat($0)?.parent == pid }
    }

    /// Live members of process group `group`.
    static func groupMembers(_ group: Int32) -> [Int32] {
        pids().filter { stat($0)?.group == group && isAlive($0) }
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

    /// SIGKILL: the post dies mid-call without a BYE (see `PeerProcess.killAbruptly`).
    func killAbruptly() {
        peer.killAbruptly()
    }

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
/// The configuration is `KamailioConfiguration`'s `.centrale` role; process handling is `Kamailio`'s.
final class CentraleProxy: @unchecked Sendable {
    static let realm = Kamailio.realm

    private let kamailio: Kamailio

    var directory: URL { kamailio.directory }
    var udpPort: Int { kamailio.udpPort }
    var tlsPort: Int { kamailio.tlsPort }
    var tcpPort: Int { kamailio.tcpPort }
    var tlsURI: String { kamailio.tlsURI }
    var udpURI: String { kamailio.udpURI }
    var log: String { kamailio.log }

    /// `posts`: (URI, priority); higher priority is tried first.
    init(certificates: TestCertificates, password: String, posts: [(uri: String, priority: Int)],
         failoverMilliseconds: Int = 1000) async throws {
        kamailio = try await Kamailio(certificates: certificates, password: password, host: "127.0.0.1", name: "centrale",
                                      role: .centrale(posts: posts, failoverMilliseconds: failoverMilliseconds))
        try await kamailio.waitUntilReady()
    }

    func stop() { kamailio.stop() }
}
