public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Starts a test server (`python3 -u ARGUMENTS`) that prints `PORT <n>` on its first line once
/// it listens, and returns it with that port. stderr is discarded. A server that exits or
/// prints anything else is killed and reported.
public func launchPortPrintingServer(_ arguments: [String]) throws -> (process: Process, port: Int) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    process.arguments = ["-u"] + arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    var line = Data()
    while !line.contains(UInt8(ascii: "\n")) {
        let chunk = out.fileHandleForReading.availableData
        if chunk.isEmpty { break }
        line.append(chunk)
    }
    let text = String(decoding: line, as: UTF8.self)
    guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5).trimmingCharacters(in: .whitespacesAndNewlines))
    else {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw TestSetupFailure("test server \(arguments.first ?? "") did not start: \(text)")
    }
    return (process, port)
}

/// Stops a test server by its PID. SIGKILL, not SIGTERM: the child inherits the signal mask
/// of the test runner's thread that spawned it, where SIGTERM can be blocked, and then never
/// exits.
public func killTestServer(_ process: Process) {
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
