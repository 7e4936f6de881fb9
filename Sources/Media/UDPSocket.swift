// Blocking UDP sockets for the media threads (deliberately not NIO: media must not share an
// event loop with SIP). Numeric IPv4/IPv6 addresses only; SDP gives us numbers.
#if canImport(Glibc)
import Glibc
#endif

/// A numeric socket address (IPv4 or IPv6) and port.
struct SocketAddress: Sendable, Equatable, CustomStringConvertible {
    enum Storage: Sendable, Equatable {
        case v4(UInt32)  // network byte order
        case v6([UInt8])
    }

    var storage: Storage
    var port: Int

    init(host: String, port: Int) throws {
        guard (0...65_535).contains(port) else { throw MediaError.socket("port \(port) is out of range") }
        self.port = port
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            storage = .v4(v4.s_addr)
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            storage = .v6(withUnsafeBytes(of: &v6) { Array($0) })
        } else {
            throw MediaError.socket("\(host) is not a numeric IP address")
        }
    }

    var family: Int32 {
        switch storage {
        case .v4: AF_INET
        case .v6: AF_INET6
        }
    }

    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        switch storage {
        case .v4(let address):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = in_port_t(UInt16(port).bigEndian)
            sin.sin_addr = in_addr(s_addr: address)
            return withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6(let bytes):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: bytes) }
            return withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }

    /// The sender of a datagram as `recvfrom` wrote it; nil for another family.
    init?(_ storage: sockaddr_storage) {
        var copy = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let sin = withUnsafeBytes(of: &copy) { $0.load(as: sockaddr_in.self) }
            self.storage = .v4(sin.sin_addr.s_addr)
            port = Int(UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let sin6 = withUnsafeBytes(of: &copy) { $0.load(as: sockaddr_in6.self) }
            var address = sin6.sin6_addr
            self.storage = .v6(withUnsafeBytes(of: &address) { Array($0) })
            port = Int(UInt16(bigEndian: sin6.sin6_port))
        default:
            return nil
        }
    }

    var description: String {
        switch storage {
        case .v4(let address):
            let b = withUnsafeBytes(of: address) { Array($0) }
            return "\(b[0]).\(b[1]).\(b[2]).\(b[3]):\(port)"
        case .v6:
            return "[ipv6]:\(port)"
        }
    }
}

private func errnoString(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

/// One bound UDP socket. `receive` waits at most `timeout` so a thread can check its stop
/// flag; `close` is idempotent.
final class UDPSocket: @unchecked Sendable {
    // The descriptor is written only in init and close; close runs after the threads that
    // use the socket have been joined.
    private(set) var descriptor: Int32
    let localPort: Int

    init(host: String, port: Int = 0) throws {
        let address = try SocketAddress(host: host, port: port)
        let fd = socket(address.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MediaError.socket("socket: \(errnoString())") }
        let bound = address.withSockAddr { bind(fd, $0, $1) }
        guard bound == 0 else {
            let message = errnoString()
            Glibc.close(fd)
            throw MediaError.socket("bind \(address): \(message)")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            let message = errnoString()
            Glibc.close(fd)
            throw MediaError.socket("getsockname: \(message)")
        }
        let port: UInt16 = withUnsafePointer(to: &storage) { pointer in
            if address.family == AF_INET {
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
        }
        var buffer: Int32 = 1 << 20
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, socklen_t(MemoryLayout<Int32>.size))
        descriptor = fd
        localPort = Int(port)
    }

    deinit { close() }

    func send(_ bytes: [UInt8], to address: SocketAddress) throws {
        let sent = bytes.withUnsafeBytes { raw in
            address.withSockAddr { sendto(descriptor, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL), $0, $1) }
        }
        if sent < 0 {
            let code = errno
            // The peer's port not being open yet (ICMP refused) is not our failure.
            if code == ECONNREFUSED || code == EINTR || code == EAGAIN { return }
            throw MediaError.socket("sendto \(address): \(errnoString(code))")
        }
    }

    /// Room for the largest datagram, owned by one receiving thread and reused for every
    /// packet: each datagram then costs one array of its own size, not a 64 KB one that the
    /// jitter buffer or frame assembly would keep alive.
    final class ReceiveBuffer {
        fileprivate let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 16)
        fileprivate var sender = sockaddr_storage()
        /// Who sent the datagram last returned (a STUN request is answered there).
        var source: SocketAddress? { SocketAddress(sender) }
        init() {}
        deinit { storage.deallocate() }
    }

    /// Waits for a datagram on any of `sockets` for up to `timeoutMilliseconds`.
    /// Returns the index of the socket and the datagram, or nil on timeout.
    static func receive(from sockets: [UDPSocket], timeoutMilliseconds: Int32,
                        buffer: ReceiveBuffer = ReceiveBuffer()) throws -> (Int, [UInt8])? {
        var fds = sockets.map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
        let ready = poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
        if ready < 0 {
            if errno == EINTR { return nil }
            throw MediaError.socket("poll: \(errnoString())")
        }
        guard ready > 0 else { return nil }
        for (index, entry) in fds.enumerated() where entry.revents & Int16(POLLIN) != 0 {
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = withUnsafeMutablePointer(to: &buffer.sender) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(entry.fd, buffer.storage.baseAddress, buffer.storage.count, Int32(MSG_DONTWAIT), $0, &length)
                }
            }
            if count < 0 {
                let code = errno
                if code == EAGAIN || code == EINTR || code == ECONNREFUSED { return nil }
                throw MediaError.socket("recv: \(errnoString(code))")
            }
            return (index, Array(UnsafeRawBufferPointer(rebasing: buffer.storage[..<count])))
        }
        return nil
    }

    func close() {
        if descriptor >= 0 {
            Glibc.close(descriptor)
            descriptor = -1
        }
    }
}

/// A pthread that can be joined: media threads must be gone when `stop()` returns.
final class JoinableThread: @unchecked Sendable {
    private final class Body {
        let name: String
        let niceness: Int32
        let run: @Sendable () -> Void
        init(name: String, niceness: Int32, run: @escaping @Sendable () -> Void) {
            self.name = name
            self.niceness = niceness
            self.run = run
        }
    }

    /// The nice value audio threads ask for: the most an unprivileged process may take under
    /// the unit's `LimitNICE=-4`, so a busy video encoder or screen cannot starve 20 ms audio
    /// frames. No real-time class (the unit has `RestrictRealtime=yes`).
    static let audioNiceness: Int32 = -4

    // Written once in init, read by join from the one thread that owns this object.
    private var thread: pthread_t
    private var joined = false

    /// `niceness` below 0 is asked for and silently not had where the limit refuses it
    /// (EACCES without RLIMIT_NICE): the thread then runs at the process's priority.
    init(name: String, niceness: Int32 = 0, _ run: @escaping @Sendable () -> Void) throws {
        let body = Unmanaged.passRetained(Body(name: name, niceness: niceness, run: run)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            let body = Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue()
            // Linux keeps a nice value per thread, and PRIO_PROCESS with who 0 sets the calling
            // thread's only (setpriority(2), BUGS). Before the name, so a thread seen by its
            // name already has its priority.
            if body.niceness != 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, body.niceness) }
            nameThisThread(body.name)
            body.run()
            return nil
        }, body)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(body).release()
            throw MediaError.configuration("pthread_create \(name): \(errnoString(result))")
        }
        self.thread = thread
    }

    func join() {
        guard !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }
}

/// Names the calling thread for top -H and /proc/PID/task/*/comm (the media benchmark reads
/// it). Glibc's pthread_setname_np is not visible to Swift, so through /proc/thread-self.
private func nameThisThread(_ name: String) {
    let descriptor = open("/proc/thread-self/comm", O_WRONLY)
    guard descriptor >= 0 else { return }
    let bytes = Array(name.utf8.prefix(15))
    _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    Glibc.close(descriptor)
}

/// Wall-clock time since the Unix epoch, for RTCP sender reports only.
func wallClockSinceEpoch() -> Duration {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec)
}

/// Sleeps until `deadline` (pacing of the playout thread), in slices of at most 20 ms.
func sleep(until deadline: ContinuousClock.Instant) {
    let remaining = ContinuousClock.now.duration(to: deadline)
    guard remaining > .zero else { return }
    let (seconds, attoseconds) = remaining.components
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
    _ = nanosleep(&request, nil)
}
