import Foundation
import Testing
@testable import Store

@Suite("Integrity at open")
struct IntegrityTests {
    /// A database file with some contacts and enough call records to span many pages,
    /// closed cleanly (so everything is checkpointed into the main file).
    private func makePopulatedDatabase(at path: String) throws {
        let store = try BeeldzorgStore(path: path)
        try store.replaceContacts([contact("a", "Anna", "sip:anna@h", order: 1)])
        for i in 0..<300 {
            try store.recordCallStarted(
                id: "call-\(i)", direction: .incoming, peerURI: "sip:anna@h",
                peerName: String(repeating: "Anna ", count: 20), at: Date())
        }
        try store.close()
    }

    private func overwrite(_ path: String, at offset: UInt64, count: Int) throws {
        var rng = SystemRandomNumberGenerator()
        let garbage = Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: garbage)
        try handle.close()
    }

    private func checkFreshStoreAfterFault(_ dir: TempDir, garbageAt offset: UInt64, count: Int) throws {
        try makePopulatedDatabase(at: dir.dbPath)
        let size = try #require(
            try FileManager.default.attributesOfItem(atPath: dir.dbPath)[.size] as? NSNumber)
        #expect(size.intValue > 16 * 4096, "the test database must span many pages")
        try overwrite(dir.dbPath, at: offset, count: count)
        let damaged = try Data(contentsOf: URL(fileURLWithPath: dir.dbPath))

        let store = try BeeldzorgStore(path: dir.dbPath)
        let fault = try #require(store.openFault)
        #expect(!fault.inMemoryFallback)
        let keptAs = try #require(fault.movedAsideTo)
        #expect(keptAs.hasPrefix(dir.dbPath + ".corrupt-"))
        // The damaged file is kept byte for byte for the technician.
        #expect(try Data(contentsOf: URL(fileURLWithPath: keptAs)) == damaged)
        // The fresh database is empty, sound and usable.
        #expect(try store.integrityCheck() == ["ok"])
        #expect(try store.contacts().isEmpty)
        #expect(try store.callRecordCount() == 0)
        try store.replaceContacts([contact("b", "Bert", "sip:bert@h", order: 1)])
        try store.close()

        // Opening again is clean.
        let again = try BeeldzorgStore(path: dir.dbPath)
        #expect(again.openFault == nil)
        #expect(try again.contacts().map(\.id) == ["b"])
    }

    @Test func garbageOverHeader() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try checkFreshStoreAfterFault(dir, garbageAt: 0, count: 100)
    }

    @Test func garbageOverPages() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        // Keep page 1 (header and schema) intact; smash pages 2…9 (page size 4096).
        try checkFreshStoreAfterFault(dir, garbageAt: 4096, count: 8 * 4096)
    }

    @Test func cleanFileOpensWithoutFault() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try makePopulatedDatabase(at: dir.dbPath)
        let store = try BeeldzorgStore(path: dir.dbPath)
        #expect(store.openFault == nil)
        #expect(try store.callRecordCount() == 300)
        #expect(try dir.files().allSatisfy { !$0.contains("corrupt") })
    }

    @Test func fallsBackToMemoryWhenNothingCanBeCreated() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let blocker = dir.path + "/not-a-directory"
        _ = FileManager.default.createFile(atPath: blocker, contents: Data("x".utf8))
        let path = blocker + "/beeldzorg.sqlite"
        #expect(throws: (any Error).self) { try BeeldzorgStore(path: path) }
        let store = BeeldzorgStore.openOrFallBackToMemory(path: path)
        let fault = try #require(store.openFault)
        #expect(fault.inMemoryFallback)
        try store.replaceContacts([contact("a", "Anna", "sip:anna@h", order: 1)])
        #expect(try store.contacts().count == 1)
    }

    @Test func readOnlyOpen() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        #expect(throws: StoreError.notInitialised(path: dir.dbPath)) {
            try BeeldzorgStore.openReadOnly(path: dir.dbPath)
        }
        let writer = try BeeldzorgStore(path: dir.dbPath)
        try writer.replaceContacts([contact("a", "Anna", "sip:anna@h", order: 1)])
        // While the daemon still has it open.
        let reader = try BeeldzorgStore.openReadOnly(path: dir.dbPath)
        #expect(try reader.contacts().map(\.id) == ["a"])
        #expect(throws: (any Error).self) { try reader.setSetting("x", to: "y") }
        try writer.replaceContacts([contact("b", "Bert", "sip:bert@h", order: 1)])
        #expect(try reader.contacts().map(\.id) == ["b"])
    }
}
