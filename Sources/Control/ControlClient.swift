public import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking client for the control socket, for beeldzorgctl and tests: connect, send one
/// request line, read one answer line.
public struct ControlClient: Sendable {
    public var socketPath: String
    public var timeout: Duration

    public init(socketPath: String = ControlProtocol.defaultSocketPath, timeout: Duration = .seconds(5)) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    public enum Failure: Error, CustomStringConvertible, Sendable {
        /// Nothing listens there: the daemon is not running (or runs elsewhere).
        case daemonNotRunning(path: String, reason: String)
        case permissionDenied(path: String)
        case io(String)

        public var description: String {
            switch self {
            case .daemonNotRunning(let path, let reason): "beeldzorgd is not running (no answer on \(path): \(reason))"
            case .permissionDenied(let path): "no permission to use \(path): run as root or a member of the beeldzorg-tech group"
            case .io(let message): message
            }
        }
    }

    public func send(_ request: ControlRequest) throws -> ControlResponse {
        let body = try ControlCoding.encoder.encode(request)
        let line = try exchange(body + Data([0x0A]))
        return try ControlResponse.decode(line)
    }

    /// Sends raw bytes and returns the first answer line; tests use it for malformed input.
    public func exchange(_ bytes: Data) throws -> Data {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure.io("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }

        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw Failure.io("socket path too long: \(socketPath)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected != 0 {
            let code = errno
            let reason = String(cString: strerror(code))
            if code == EACCES { throw Failure.permissionDenied(path: socketPath) }
            throw Failure.daemonNotRunning(path: socketPath, reason: reason)
        }

        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Failure.io("writing to \(socketPath): \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }

        var answer = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !answer.contains(0x0A) {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure.io("reading from \(socketPath): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            answer.append(contentsOf: buffer[0..<n])
            if answer.count > 4 * 1024 * 1024 { throw Failure.io("the daemon's answer is too long") }
        }
        guard let newline = answer.firstIndex(of: 0x0A) else {
            throw Failure.io("the daemon closed the connection without answering")
        }
        return answer[answer.startIndex..<newline]
    }
}
