public import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's side of `Type=notify`: datagrams to `$NOTIFY_SOCKET` (sd_notify(3)'s
/// protocol, written out here because it is one sendto and libsystemd is not on the image).
/// Without the variable (a terminal, the demo, tests) every call does nothing.
public struct SystemdNotifier: Sendable {
    public let socketPath: String?
    /// How often systemd wants `WATCHDOG=1`; half of `WatchdogSec=` is sent, as sd_watchdog_enabled(3) advises.
    public let watchdogInterval: Duration?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        let pidMatches = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
        if pidMatches, let micros = environment["WATCHDOG_USEC"].flatMap(UInt64.init), micros > 0 {
            watchdogInterval = .microseconds(Int64(micros / 2))
        } else {
            watchdogInterval = nil
        }
    }

    public func ready(status: String) { send("READY=1\nSTATUS=\(Self.oneLine(status))") }
    public func status(_ text: String) { send("STATUS=\(Self.oneLine(text))") }

    /// A newline would start another field of the notification (READY=, MAINPID=, …).
    static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
    public func watchdog() { send("WATCHDOG=1") }
    public func stopping() { send("STOPPING=1") }

    /// Sends one notification; failures are ignored, as sd_notify's are.
    @discardableResult
    public func send(_ message: String) -> Bool {
        guard let socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(socketPath.utf8)
        // "@name" is an abstract socket: a leading NUL byte instead of the "@".
        if path.first == UInt8(ascii: "@") { path[0] = 0 }
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (path.first == 0 ? 0 : 1))
        let sent = message.utf8CString.withUnsafeBufferPointer { text in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, text.baseAddress, text.count - 1, Int32(MSG_NOSIGNAL), $0, length)
                }
            }
        }
        return sent >= 0
    }
}
