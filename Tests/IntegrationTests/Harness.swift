import Control
import Foundation
import TestSupport
import Testing

/// Where `swift build` put the executables: next to this test bundle.
enum Binaries {
    static var directory: URL { BuiltProducts.directory }
    static var daemon: URL { directory.appendingPathComponent("beeldzorgd") }
    static var ctl: URL { directory.appendingPathComponent("beeldzorgctl") }
    static var packageRoot: URL { BuiltProducts.packageRoot }
}

/// A UDP port nobody on loopback is using right now (bound, read, released).
func freeUDPPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// One beeldzorgd process with its own directory, configuration, FIFO button and control
/// socket, talking to the demo centrale on loopback. Stopped by PID.
final class DaemonUnderTest: @unchecked Sendable {
    let directory: URL
    let configPath: String
    let socketPath: String
    let buttonFIFO: String
    let databasePath: String
    private var process = Process()
    private let output: URL

    /// Added to the daemon's environment (e.g. `PULSE_SERVER` for a private mixer).
    var environment: [String: String] = [:]

    init(policy: String = "ring_all", extraConfig: String = "", posts: Int = 2, displayName: String? = nil,
         audioConfig: String = "") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("bz-it-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        configPath = directory.appendingPathComponent("beeldzorgd.yaml").path
        socketPath = directory.appendingPathComponent("control.sock").path
        buttonFIFO = directory.appendingPathComponent("button").path
        databasePath = directory.appendingPathComponent("beeldzorg.sqlite").path
        output = directory.appendingPathComponent("daemon.log")
        let postLines = (1...posts).map { n in
            "    - id: post-\(n)\n      uri: sip:post\(n)@127.0.0.1:\(freeUDPPort())"
        }.joined(separator: "\n")
        let config = """
            account:
              user: tablet-test
              domain: 127.0.0.1
              listen_host: 127.0.0.1\(displayName.map { "\n  display_name: \"\($0)\"" } ?? "")
            transport: udp
            srtp: required
            centrale:
              policy: \(policy)
              deadline_seconds: 20
              posts:
            \(postLines)
            button:
              device: fifo:\(buttonFIFO)
            camera:
              device: test-pattern
            audio:
              capture: tone:440
              playback: "null"\(audioConfig.isEmpty ? "" : "\n" + audioConfig)
            database: \(databasePath)
            control_socket: \(socketPath)
            prompts: \(Binaries.packageRoot.appendingPathComponent("prompts").path)
            demo_centrale: true
            \(extraConfig)
            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func start() throws {
        // A restart (after `stop`) needs a new Process: one runs only once.
        if process.processIdentifier != 0 { process = Process() }
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let log = try FileHandle(forWritingTo: output)
        process.executableURL = Binaries.daemon
        process.arguments = ["--config", configPath, "--console", "--log-level", "debug"]
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var log: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    var client: ControlClient { ControlClient(socketPath: socketPath, timeout: .seconds(5)) }

    func status() throws -> StatusReport {
        try client.send(ControlRequest(cmd: .status)).decodeResult(StatusReport.self)
    }

    /// Waits until the control socket answers.
    func waitUntilReady(timeout: Duration = .seconds(20)) async throws {
        try await waitFor("the control socket to answer", timeout: timeout) { (try? self.status()) != nil }
    }

    func waitForPhase(_ phase: String, timeout: Duration = .seconds(15)) async throws {
        try await waitFor("phase \(phase)", timeout: timeout) { (try? self.status().call.phase) == phase }
    }

    func waitFor(_ what: String, timeout: Duration, _ condition: @escaping () throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return }
            guard process.isRunning else {
                throw HarnessError("beeldzorgd exited (status \(process.terminationStatus)) while waiting for \(what)\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let phase = (try? status().call.phase) ?? "?"
        throw HarnessError("timed out waiting for \(what) (phase now \(phase))\n\(log)")
    }

    /// Writes a line to the button FIFO: the same path the hardware button's events take.
    func button(_ line: String) throws {
        let fd = open(buttonFIFO, O_WRONLY | O_NONBLOCK)
        guard fd >= 0 else { throw HarnessError("cannot open the button FIFO: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array((line + "\n").utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw HarnessError("short write to the button FIFO") }
    }

    /// SIGTERM, then wait; returns the exit status.
    @discardableResult
    func stop() async -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = ContinuousClock.now + .seconds(10)
            while process.isRunning && ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(50))
            }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
        try? FileManager.default.removeItem(at: directory)
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs beeldzorgctl and returns its exit status and standard output.
func runCtl(_ arguments: [String], socket: String?) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = Binaries.ctl
    process.arguments = arguments + (socket.map { ["--socket", $0] } ?? [])
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    var environment = ProcessInfo.processInfo.environment
    environment["NO_COLOR"] = "1"
    process.environment = environment
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}
