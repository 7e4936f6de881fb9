import Daemon
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// SystemdNotifier against a real AF_UNIX datagram socket playing systemd's part: what
/// arrives must be exactly what sd_notify(3) would have sent, one datagram per call.
@Suite struct SystemdNotifierTests {

    // MARK: The sending side

    @Test func aFilesystemSocketReceivesEveryMessageVerbatim() throws {
        let receiver = try DatagramReceiver(filesystemIn: FileManager.default.temporaryDirectory.path)
        defer { receiver.close() }
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])
        #expect(notifier.socketPath == receiver.notifySocket)

        notifier.ready(status: "Geregistreerd bij de centrale")
        #expect(try receiver.next() == "READY=1\nSTATUS=Geregistreerd bij de centrale")
        notifier.status("In gesprek met post-utrecht-1")
        #expect(try receiver.next() == "STATUS=In gesprek met post-utrecht-1")
        notifier.watchdog()
        #expect(try receiver.next() == "WATCHDOG=1")
        notifier.stopping()
        #expect(try receiver.next() == "STOPPING=1")
        #expect(notifier.send("EXTEND_TIMEOUT_USEC=5000000"))
        #expect(try receiver.next() == "EXTEND_TIMEOUT_USEC=5000000")
        // One datagram per call, no stray extra ones (and no trailing NUL in any of them).
        #expect(try receiver.nextIfAny() == nil)
    }

    @Test func anAbstractSocketIsReachedThroughItsAtName() throws {
        let receiver = try DatagramReceiver(abstractName: "beeldzorg-test-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        defer { receiver.close() }
        #expect(receiver.notifySocket.hasPrefix("@"))
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])

        notifier.ready(status: "Klaar")
        #expect(try receiver.next() == "READY=1\nSTATUS=Klaar")
        notifier.watchdog()
        #expect(try receiver.next() == "WATCHDOG=1")
        #expect(try receiver.nextIfAny() == nil)
    }

    @Test func nonASCIIStatusTextArrivesAsUTF8() throws {
        let receiver = try DatagramReceiver(filesystemIn: FileManager.default.temporaryDirectory.path)
        defer { receiver.close() }
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])
        notifier.status("Geen verbinding — opnieuw proberen over 5 s")
        let bytes = try #require(try receiver.nextBytes())
        #expect(bytes == Array("STATUS=Geen verbinding — opnieuw proberen over 5 s".utf8))
    }

    @Test(arguments: [[:], ["NOTIFY_SOCKET": ""]])
    func withoutANotifySocketNothingIsSent(environment: [String: String]) {
        let notifier = SystemdNotifier(environment: environment)
        #expect(notifier.socketPath == nil)
        #expect(notifier.send("READY=1") == false)
        // The convenience calls must not trap either.
        notifier.ready(status: "x")
        notifier.watchdog()
    }

    @Test func aSocketThatIsNotThereMakesSendReturnFalse() throws {
        let missing = FileManager.default.temporaryDirectory
            .appendingPathComponent("beeldzorg-no-such-socket-\(getpid())-\(UInt32.random(in: 0 ... .max))").path
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": missing])
        #expect(notifier.socketPath == missing)
        #expect(notifier.send("READY=1") == false)
    }

    @Test func aPathTooLongForSockaddrUnIsRefusedNotTruncated() {
        let long = "/tmp/" + String(repeating: "x", count: 200)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": long])
        #expect(notifier.send("READY=1") == false)
    }

    // MARK: The watchdog interval

    @Test(arguments: [
        ("30000000", Duration.seconds(15)),
        ("1000000", .milliseconds(500)),
        ("3", .microseconds(1)),
    ])
    func theWatchdogIntervalIsHalfOfWatchdogUsec(usec: String, expected: Duration) {
        let notifier = SystemdNotifier(environment: [
            "NOTIFY_SOCKET": "/run/systemd/notify",
            "WATCHDOG_USEC": usec,
            "WATCHDOG_PID": "\(getpid())",
        ])
        #expect(notifier.watchdogInterval == expected)
    }

    @Test func withoutWatchdogPidTheWatchdogStillApplies() {
        // sd_watchdog_enabled(3): WATCHDOG_PID is optional; without it the watchdog is meant for us.
        let notifier = SystemdNotifier(environment: ["WATCHDOG_USEC": "20000000"])
        #expect(notifier.watchdogInterval == .seconds(10))
    }

    @Test func aWatchdogMeantForAnotherProcessIsIgnored() {
        let other = getppid() == getpid() ? 1 : getppid()
        let notifier = SystemdNotifier(environment: [
            "NOTIFY_SOCKET": "/run/systemd/notify",
            "WATCHDOG_USEC": "30000000",
            "WATCHDOG_PID": "\(other)",
        ])
        #expect(notifier.watchdogInterval == nil)
    }

    @Test(arguments: [[:], ["WATCHDOG_USEC": "0"], ["WATCHDOG_USEC": "soon"], ["WATCHDOG_USEC": "-5"]])
    func noUsableWatchdogUsecMeansNoWatchdog(environment: [String: String]) {
        var environment = environment
        environment["WATCHDOG_PID"] = "\(getpid())"
        #expect(SystemdNotifier(environment: environment).watchdogInterval == nil)
    }
}

/// systemd's end of `$NOTIFY_SOCKET`: a bound AF_UNIX datagram socket with a receive
/// timeout, so a missing datagram fails the test instead of hanging it.
private final class DatagramReceiver {
    enum Failure: Error, CustomStringConvertible {
        case system(String, Int32)
        case nothingArrived
        var description: String {
            switch self {
            case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
            case .nothingArrived: "no datagram arrived within the receive timeout"
            }
        }
    }

    /// The value systemd would put in `NOTIFY_SOCKET`.
    let notifySocket: String
    private let fd: Int32
    private let fileToRemove: String?

    convenience init(filesystemIn directory: String) throws {
        let path = (directory as NSString).appendingPathComponent(
            "bz-notify-\(getpid())-\(UInt32.random(in: 0 ... .max)).sock")
        try self.init(sunPath: Array(path.utf8) + [0], notifySocket: path, fileToRemove: path)
    }

    convenience init(abstractName name: String) throws {
        // Abstract: a leading NUL, then the name, no terminator; the length counts exactly these bytes.
        try self.init(sunPath: [0] + Array(name.utf8), notifySocket: "@" + name, fileToRemove: nil)
    }

    private init(sunPath: [UInt8], notifySocket: String, fileToRemove: String?) throws {
        self.notifySocket = notifySocket
        self.fileToRemove = fileToRemove
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure.system("socket", errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        precondition(sunPath.count <= MemoryLayout.size(ofValue: address.sun_path), "test socket path too long")
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: sunPath) }
        // Filesystem paths: the terminating NUL may be counted; abstract names: exactly the bytes.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + sunPath.count)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure.system("bind", code)
        }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram as text; fails if none arrives within the receive timeout.
    func next() throws -> String {
        guard let bytes = try nextBytes() else { throw Failure.nothingArrived }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The next datagram's bytes, waiting up to the receive timeout; nil if none came.
    func nextBytes() throws -> [UInt8]? {
        try receive(flags: 0)
    }

    /// A datagram already queued, without waiting.
    func nextIfAny() throws -> String? {
        try receive(flags: Int32(MSG_DONTWAIT)).map { String(decoding: $0, as: UTF8.self) }
    }

    private func receive(flags: Int32) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, flags) }
            if count >= 0 { return Array(buffer[0 ..< count]) }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return nil
            case let code: throw Failure.system("recv", code)
            }
        }
    }

    func close() {
        Glibc.close(fd)
        if let fileToRemove { unlink(fileToRemove) }
    }
}
