import Glibc
public import Logging
import Synchronization

/// What the kernel told us, summarised: enough for a log line and for deciding that
/// connectivity may have changed. Registration does not try to judge whether the change
/// matters; it re-registers (RFC 5626 §4.4: a new flow after a network change).
public struct NetworkChange: Sendable, Equatable, CustomStringConvertible {
    /// rtnetlink messages seen since the previous report, by kind.
    public var links = 0
    public var addresses = 0
    public var routes = 0
    /// Set when a link came up with carrier (IFF_RUNNING) in this batch.
    public var linkCameUp = false

    public init() {}

    public var description: String {
        "links \(links), addresses \(addresses), routes \(routes)\(linkCameUp ? ", a link came up" : "")"
    }
}

/// Watches rtnetlink (links, IPv4/IPv6 addresses and routes) on its own thread and reports,
/// debounced, that connectivity may have changed. Linux only.
///
/// Why not NIO: the socket is a plain `AF_NETLINK` datagram socket, NIO has no bootstrap for
/// it, and a blocking `poll` on a thread with a self-pipe for stopping is the simplest honest
/// shape (like the evdev and ALSA readers in Devices).
///
/// Debounce: a link going up produces a burst (link, address, route, IPv6 autoconf); the
/// report goes out once the burst has been quiet for `quiet`, and at the latest `maxDelay`
/// after its first message, so a flapping link still gets reported.
public final class NetworkWatcher: Sendable {
    public let changes: AsyncStream<NetworkChange>
    private let continuation: AsyncStream<NetworkChange>.Continuation
    private let quiet: Duration
    private let maxDelay: Duration
    private let logger: Logger
    /// socket, and the self-pipe's read and write ends; -1 when closed.
    private let descriptors = Mutex<(socket: Int32, stopRead: Int32, stopWrite: Int32)>((-1, -1, -1))

    public init(quiet: Duration = .milliseconds(100), maxDelay: Duration = .milliseconds(500), logger: Logger) {
        self.quiet = quiet
        self.maxDelay = maxDelay
        self.logger = logger
        (changes, continuation) = AsyncStream<NetworkChange>.makeStream(bufferingPolicy: .bufferingNewest(16))
    }

    // From <linux/netlink.h> and <linux/rtnetlink.h>, which Swift's Glibc module does not
    // import. Kernel ABI: these values never change.
    private static let netlinkRoute: Int32 = 0  // NETLINK_ROUTE
    private static let groups: UInt32 =
        0x1  // RTMGRP_LINK
        | 0x10  // RTMGRP_IPV4_IFADDR
        | 0x40  // RTMGRP_IPV4_ROUTE
        | 0x100  // RTMGRP_IPV6_IFADDR
        | 0x400  // RTMGRP_IPV6_ROUTE

    /// `struct sockaddr_nl` (12 bytes).
    private struct NetlinkAddress {
        var family: UInt16 = UInt16(AF_NETLINK)
        var pad: UInt16 = 0
        var pid: UInt32 = 0
        var groups: UInt32
    }

    /// Opens the socket and starts the thread. Throws with errno's text when the kernel refuses.
    public func start() throws {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Self.netlinkRoute)
        guard fd >= 0 else { throw NetworkWatcherError("socket(AF_NETLINK): \(errnoText())") }
        var address = NetlinkAddress(groups: Self.groups)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<NetlinkAddress>.size))
            }
        }
        guard bound == 0 else {
            let text = errnoText()
            close(fd)
            throw NetworkWatcherError("bind(AF_NETLINK): \(text)")
        }
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            let text = errnoText()
            close(fd)
            throw NetworkWatcherError("pipe2: \(text)")
        }
        descriptors.withLock { $0 = (fd, pipeEnds[0], pipeEnds[1]) }
        let stopRead = pipeEnds[0]
        startThread { [self] in run(fd: fd, stopFD: stopRead) }
        logger.info("watching the network (rtnetlink)")
    }

    /// Stops the thread (it closes the descriptors on its way out) and finishes `changes`.
    public func stop() {
        let stopWrite = descriptors.withLock { d -> Int32 in
            defer { d.stopWrite = -1 }
            return d.stopWrite
        }
        guard stopWrite >= 0 else { return }
        var byte: UInt8 = 1
        _ = write(stopWrite, &byte, 1)
        close(stopWrite)
    }

    private func run(fd: Int32, stopFD: Int32) {
        defer {
            close(fd)
            close(stopFD)
            continuation.finish()
        }
        var buffer = [UInt8](repeating: 0, count: 16_384)
        var pending: NetworkChange?
        var firstAt = ContinuousClock.now
        var lastAt = ContinuousClock.now
        while true {
            var timeout: Int32 = -1
            if pending != nil {
                let now = ContinuousClock.now
                let due = min(lastAt + quiet, firstAt + maxDelay)
                timeout = Int32(max(0, (due - now).milliseconds))
            }
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("netlink poll failed; no longer watching the network", metadata: ["error": "\(errnoText())"])
                return
            }
            if fds[1].revents != 0 { return }
            if fds[0].revents & Int16(POLLIN) != 0 {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if count < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    if errno == ENOBUFS {
                        // The kernel dropped messages for us: we know something changed.
                        var change = pending ?? NetworkChange()
                        change.links += 1
                        if pending == nil { firstAt = .now }
                        pending = change
                        lastAt = .now
                        continue
                    }
                    logger.error("netlink recv failed; no longer watching the network", metadata: ["error": "\(errnoText())"])
                    return
                }
                var change = pending ?? NetworkChange()
                if Self.parse(buffer[..<count], into: &change) {
                    if pending == nil { firstAt = .now }
                    pending = change
                    lastAt = .now
                }
            } else if fds[0].revents != 0 {
                logger.error("netlink socket error; no longer watching the network")
                return
            }
            if let change = pending {
                let now = ContinuousClock.now
                if now >= lastAt + quiet || now >= firstAt + maxDelay {
                    pending = nil
                    logger.info("network changed", metadata: ["change": "\(change)"])
                    continuation.yield(change)
                }
            }
        }
    }

    /// Counts the rtnetlink messages in one datagram; true if any was about links, addresses or
    /// routes. Bounds-checked: a short or odd message ends the walk.
    static func parse(_ bytes: ArraySlice<UInt8>, into change: inout NetworkChange) -> Bool {
        var offset = bytes.startIndex
        var any = false
        while bytes.endIndex - offset >= 16 {
            let length = Int(load32(bytes, offset))
            let type = load16(bytes, offset + 4)
            guard length >= 16, length <= bytes.endIndex - offset else { break }
            switch type {
            case 16, 17:  // RTM_NEWLINK, RTM_DELLINK
                change.links += 1
                any = true
                // struct ifinfomsg after the header: family(1) pad(1) type(2) index(4) flags(4) change(4)
                if type == 16, length >= 16 + 16 {
                    let flags = load32(bytes, offset + 16 + 8)
                    if flags & 0x1 != 0, flags & 0x40 != 0 { change.linkCameUp = true }  // IFF_UP, IFF_RUNNING
                }
            case 20, 21:  // RTM_NEWADDR, RTM_DELADDR
                change.addresses += 1
                any = true
            case 24, 25:  // RTM_NEWROUTE, RTM_DELROUTE
                change.routes += 1
                any = true
            default:
                break
            }
            offset += (length + 3) & ~3  // NLMSG_ALIGN
        }
        return any
    }

    // Netlink fields are in host byte order.
    private static func load32(_ bytes: ArraySlice<UInt8>, _ at: Int) -> UInt32 {
        bytes[at..<(at + 4)].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
    }

    private static func load16(_ bytes: ArraySlice<UInt8>, _ at: Int) -> UInt16 {
        bytes[at..<(at + 2)].withUnsafeBytes { $0.loadUnaligned(as: UInt16.self) }
    }
}

struct NetworkWatcherError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

private func errnoText() -> String { String(cString: strerror(errno)) }

/// A detached pthread running `body` (no Foundation in this module); also the DNS resolver's.
func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { argument in
        Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue().body()
        return nil
    }, box)
    precondition(result == 0, "pthread_create failed: \(result)")
    pthread_detach(thread)
}
