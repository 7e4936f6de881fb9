import Glibc
public import NIOCore

/// The tablet's own address as others must see it, when it listens on the wildcard
/// (`listen_host: 0.0.0.0` or `::`, the default on a DHCP tablet).
///
/// The kernel's routing table decides: a UDP socket `connect()`ed to the peer (no packet
/// is sent) is given the source address the kernel would use for it, read back with
/// `getsockname`. Asked afresh for every message and every call, so a new DHCP lease or
/// a different interface is picked up without any state to invalidate.
public enum LocalAddress {
    /// Whether `host` is a wildcard bind address rather than one others can reach.
    public static func isWildcard(_ host: String) -> Bool {
        host == "0.0.0.0" || host == "::" || host == "[::]"
    }

    /// The local address the kernel would use to reach `destination`, or nil when there
    /// is no route (or the destination is not an IP socket address).
    public static func toward(_ destination: SocketAddress) -> String? {
        let family: Int32
        switch destination {
        case .v4: family = AF_INET
        case .v6: family = AF_INET6
        default: return nil
        }
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let connected = destination.withSockAddr { address, length in
            connect(fd, address, socklen_t(length))
        }
        guard connected == 0 else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return nil }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(storage.ss_family) {
        case AF_INET:
            var address = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self) }.sin_addr
            guard inet_ntop(AF_INET, &address, &text, socklen_t(text.count)) != nil else { return nil }
        case AF_INET6:
            var address = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in6.self) }.sin6_addr
            guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { return nil }
        default:
            return nil
        }
        let host = String(cString: text)
        return isWildcard(host) ? nil : host
    }
}
