import Foundation
import Synchronization
import Testing

/// A network namespace of the test's own with a veth pair: the host end (`hostAddress`) stays
/// in the test's namespace, where Kamailio listens; the tablet end (`tabletAddress`) is inside
/// the namespace, where the registering side runs (`sip-benchmark register` under
/// `ip netns exec`: a Swift test process cannot enter a namespace itself). Deleting the
/// namespace removes the pair. Needs root and ip(8).
final class NetworkNamespace {
    static let ip = "/usr/sbin/ip"
    static var available: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: ip) }

    let name: String
    let hostInterface: String
    let tabletInterface: String
    let hostAddress: String
    let tabletAddress: String
    private var processes: [Process] = []

    init() throws {
        let tag = String(UInt32.random(in: 0..<0xFFFFFF), radix: 16)
        name = "bzsip-\(tag)"
        hostInterface = "bzh\(tag)"
        tabletInterface = "bzt\(tag)"
        let subnet = "10.\(Int.random(in: 64...127)).\(Int.random(in: 0...255))"
        hostAddress = "\(subnet).1"
        tabletAddress = "\(subnet).2"
        try run(Self.ip, ["netns", "add", name])
        do {
            try run(Self.ip, ["link", "add", hostInterface, "type", "veth", "peer", "name", tabletInterface])
            try run(Self.ip, ["link", "set", tabletInterface, "netns", name])
            try run(Self.ip, ["addr", "add", "\(hostAddress)/30", "dev", hostInterface])
            try run(Self.ip, ["link", "set", hostInterface, "up"])
            try inside(["ip", "addr", "add", "\(tabletAddress)/30", "dev", tabletInterface])
            try inside(["ip", "link", "set", "lo", "up"])
            try inside(["ip", "link", "set", tabletInterface, "up"])
        } catch {
            remove()
            throw error
        }
    }

    /// Runs a short command inside the namespace, to completion.
    func inside(_ command: [String]) throws {
        try run(Self.ip, ["netns", "exec", name] + command)
    }

    func setTabletLink(up: Bool) throws {
        try inside(["ip", "link", "set", tabletInterface, up ? "up" : "down"])
    }

    /// Starts a long-running process inside the namespace; stdout lines go to the recorder.
    /// It is stopped (stdin closed, then SIGKILL by its PID) in `stopAll`.
    func launch(_ executable: String, _ arguments: [String]) throws -> (Process, LineRecorder) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.ip)
        process.arguments = ["netns", "exec", name, executable] + arguments  // ip execs it: same PID
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        let lines = LineRecorder(output.fileHandleForReading)
        try process.run()
        processes.append(process)
        return (process, lines)
    }

    func stopAll() {
        for process in processes where process.isRunning {
            try? (process.standardInput as? Pipe)?.fileHandleForWriting.close()
            for _ in 0..<200 where process.isRunning { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        processes.removeAll()
    }

    func remove() {
        stopAll()
        try? run(Self.ip, ["netns", "del", name])
        try? run(Self.ip, ["link", "del", hostInterface])  // gone with the namespace already, normally
    }

    deinit { remove() }
}

/// Collects a pipe's output line by line, each with the moment it was read, so a test can
/// wait for a line and measure when it came.
final class LineRecorder: Sendable {
    private let state = Mutex<(lines: [(String, ContinuousClock.Instant)], partial: String, consumed: Int)>(([], "", 0))

    init(_ handle: FileHandle) {
        handle.readabilityHandler = { [self] handle in
            let data = handle.availableData
            let now = ContinuousClock.now
            if data.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            state.withLock { state in
                state.partial += String(decoding: data, as: UTF8.self)
                while let newline = state.partial.firstIndex(of: "\n") {
                    state.lines.append((String(state.partial[..<newline]), now))
                    state.partial = String(state.partial[state.partial.index(after: newline)...])
                }
            }
        }
    }

    var text: String { state.withLock { $0.lines.map(\.0).joined(separator: "\n") } }

    /// The first line not yet consumed that starts with `prefix`, and when it was read.
    func next(_ prefix: String, timeout: Duration) async throws -> (line: String, at: ContinuousClock.Instant) {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let found = state.withLock { state -> (String, ContinuousClock.Instant)? in
                guard let index = state.lines[state.consumed...].firstIndex(where: { $0.0.hasPrefix(prefix) }) else {
                    return nil
                }
                state.consumed = index + 1
                return state.lines[index]
            }
            if let found { return (found.0, found.1) }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw TimedOut(what: "a line starting with \"\(prefix)\"; output so far:\n\(text)")
    }

    /// Skips everything received so far.
    func consumeAll() { state.withLock { $0.consumed = $0.lines.count } }
}

extension NetworkNamespace {
    /// A namespace of its own with Kamailio (password `password`) listening on the host end of
    /// its veth pair, for `body`; afterwards, also when `body` throws, Kamailio is stopped and
    /// the namespace removed.
    static func withKamailio<T>(
        password: String, _ body: (NetworkNamespace, TestCertificates, Kamailio) async throws -> T
    ) async throws -> T {
        let namespace = try NetworkNamespace()
        defer { namespace.remove() }
        return try await Kamailio.withRunning(password: password, host: namespace.hostAddress) { certificates, kamailio in
            try await body(namespace, certificates, kamailio)
        }
    }
}
