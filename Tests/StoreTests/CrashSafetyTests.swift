import Foundation
import Testing
@testable import Store

#if canImport(Glibc)
import Glibc
#endif

/// Kills a writer process with SIGKILL at random moments and checks that every call it
/// reported as committed survived, and that the file is sound.
///
/// The writer is the `store-crash-writer` executable of this package. The test finds it
/// next to the test bundle: `swift test` runs `.build/<triple>/debug/<Package>PackageTests.xctest`
/// from the same bin directory where `swift build` puts the package's executables (the
/// directory `swift build --show-bin-path` prints), and `swift test` builds every target,
/// executables included. `STORE_CRASH_WRITER=/path/to/store-crash-writer` overrides this.
/// `STORE_CRASH_ITERATIONS` sets the number of kills (default 200; scripts/crash-soak.sh
/// runs 1,000).
@Suite("Crash safety (SIGKILL)")
struct CrashSafetyTests {
    static func writerPath() throws -> String {
        if let override = ProcessInfo.processInfo.environment["STORE_CRASH_WRITER"] {
            return override
        }
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // Inside a bundle directory (macOS-style .xctest/Contents/MacOS): climb out of it.
        while dir.path.contains(".xctest") { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("store-crash-writer").path
    }

    /// Runs the writer for `killAfter`, SIGKILLs it, and returns the complete lines it printed.
    static func runAndKill(writer: String, db: String, killAfter: Duration) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: writer)
        process.arguments = [db]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Drain stdout concurrently so a full pipe never blocks the writer.
        let collected = Collected()
        let reader = Thread {
            collected.data = out.fileHandleForReading.readDataToEndOfFile()
            collected.done.signal()
        }
        reader.start()
        Thread.sleep(forTimeInterval: Double(killAfter.components.attoseconds) / 1e18
            + Double(killAfter.components.seconds))
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal, "the writer must die by SIGKILL, not exit")
        collected.done.wait()
        var lines = String(decoding: collected.data, as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // after the last "\n": empty, or a line cut short by the kill
        return lines
    }

    final class Collected: @unchecked Sendable {
        var data = Data()
        let done = DispatchSemaphore(value: 0)
    }

    @Test func everyReportedCommitSurvivesSIGKILL() throws {
        let writer = try Self.writerPath()
        try #require(
            FileManager.default.isExecutableFile(atPath: writer),
            "store-crash-writer not found at \(writer); build it with `swift build` or set STORE_CRASH_WRITER")
        let iterations = Int(ProcessInfo.processInfo.environment["STORE_CRASH_ITERATIONS"] ?? "") ?? 200
        let dir = try TempDir()
        defer { dir.cleanup() }

        var totalReported = 0
        var killsAfterCommits = 0
        for iteration in 0..<iterations {
            // Spread kills from "before the first commit" to "dozens of commits in".
            let killAfter = Duration.milliseconds(Int.random(in: 5...150))
            let ids = try Self.runAndKill(writer: writer, db: dir.dbPath, killAfter: killAfter)
            totalReported += ids.count
            if !ids.isEmpty { killsAfterCommits += 1 }

            let store = try BeeldzorgStore(path: dir.dbPath)
            #expect(store.openFault == nil, "iteration \(iteration): \(store.openFault!)")
            #expect(try store.integrityCheck() == ["ok"], "iteration \(iteration)")
            let ended = Set(try store.fetchRawStrings("SELECT id FROM callRecord WHERE outcome = 'answered'"))
            let queued = Set(try store.fetchRawStrings("SELECT id FROM outbox WHERE kind = 'callRecord'"))
            for id in ids {
                let wellFormed = UUID(uuidString: id) != nil
                let isEnded = ended.contains(id)
                let isQueued = queued.contains(id)
                #expect(wellFormed, "iteration \(iteration): garbled line \(id)")
                #expect(isEnded, "iteration \(iteration): reported \(id) is missing or not ended")
                #expect(isQueued, "iteration \(iteration): reported \(id) is not in the outbox")
            }
            try store.close()
        }
        // The test must actually have killed writers that had committed something.
        #expect(killsAfterCommits > iterations / 4, "only \(killsAfterCommits) kills after a commit")
        print("crash safety: \(iterations) kills, \(totalReported) reported commits verified")
    }
}
