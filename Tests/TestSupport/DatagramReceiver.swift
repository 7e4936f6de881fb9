import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// systemd's end of `$NOTIFY_SOCKET`: a bound AF_UNIX datagram socket with a receive
/// timeout, so a missing datagram fails the test instead of hanging it.
public final class DatagramReceiver {
    public enum Failure: Error, CustomStringConvertible {
        case system(String, Int32)
        case nothingArrived
        public var description: String {
            switch self {
            case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
            case .nothingArrived: "no datagram arrived within the receive timeout"
            }
        }
    }

    /// The value systemd would put in `NOTIFY_SOCKET`.
    public let notifySocket: String
    private let fd: Int32
    private let fileToRemove: String?

    public convenience init(filesystemIn directory: String) throws {
        let path = (directory as NSString).appendingPathComponent(
            "bz-notify-\(getpid())-\(UInt32.random(in: 0 ... .max)).sock")
        try self.init(sunPath: Array(path.utf8) + [0], notifySocket: path, fileToRemove: path)
    }

    public convenience init(abstractName name: String) throws {
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
    public func next() throws -> String {
        guard let bytes = try nextBytes() else { throw Failure.nothingArrived }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The next datagram's bytes, waiting up to the receive timeout; nil if none came.
    public func nextBytes() throws -> [UInt8]? {
        try receive(flags: 0)
    }

    /// A datagram already queued, without waiting.
    public func nextIfAny() throws -> String? {
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

    public func close() {
        Glibc.close(fd)
        if let fileToRemove { unlink(fileToRemove) }
    }
}
