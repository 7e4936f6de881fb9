internal import GRDB

// Raw access for this module's tests (through `@testable import`): they poke at the schema
// itself without importing GRDB.
extension BeeldzorgStore {
    /// Runs SQL that is expected to succeed or throw (one write transaction).
    func executeRaw(_ sql: String) throws {
        try writer.write { db in try db.execute(sql: sql) }
    }

    /// The first column of every row `sql` returns, as text, read on a reader connection.
    func fetchRawStrings(_ sql: String) throws -> [String] {
        try writer.read { db in try Self.firstColumns(Row.fetchAll(db, sql: sql)) }
    }

    /// Like `fetchRawStrings` but on the writer connection (pragmas are per connection).
    func fetchRawStringsOnWriter(_ sql: String) throws -> [String] {
        try writer.writeWithoutTransaction { db in try Self.firstColumns(Row.fetchAll(db, sql: sql)) }
    }

    private static func firstColumns(_ rows: [Row]) -> [String] {
        rows.map { row in
            switch row.databaseValues.first?.storage {
            case .null, nil: "NULL"
            case .int64(let i): String(i)
            case .double(let d): String(d)
            case .string(let s): s
            case .blob(let b): "<\(b.count) bytes>"
            }
        }
    }

    /// An in-memory store migrated only up to `migration` (to test later migrations
    /// against data written by earlier ones); `migrateToLatest()` finishes the job.
    static func inMemory(migratedUpTo migration: String) throws -> BeeldzorgStore {
        let queue = try DatabaseQueue(configuration: makeConfiguration(StoreOptions()))
        try Schema.migrator.migrate(queue, upTo: migration)
        return BeeldzorgStore(writer: queue, path: nil, fault: nil, options: StoreOptions())
    }

    func migrateToLatest() throws {
        try Schema.migrator.migrate(writer)
    }
}
