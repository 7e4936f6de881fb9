public import Foundation
internal import GRDB
public import Logging

/// How hard a commit is pushed to the disk before it returns.
public enum StoreDurability: String, Sendable {
    /// `PRAGMA synchronous=FULL`: the WAL is fsynced at every commit, so a commit that has
    /// returned survives a power cut. The only mode the daemon uses.
    case full
    /// `PRAGMA synchronous=NORMAL`: survives a process crash but may lose the last commits
    /// on power loss. Exists for the benchmark that measures what FULL costs.
    case normal

    var pragmaValue: String {
        switch self {
        case .full: "FULL"
        case .normal: "NORMAL"
        }
    }
}

/// Settings for opening a ``BeeldzorgStore``.
public struct StoreOptions: Sendable {
    public var retention: RetentionPolicy
    public var durability: StoreDurability
    /// The clock used for the work done at open (retention pruning, marking interrupted
    /// calls). Every API that records an event takes its time explicitly.
    public var now: @Sendable () -> Date
    public var logger: Logger

    public init(
        retention: RetentionPolicy = .default,
        durability: StoreDurability = .full,
        now: @escaping @Sendable () -> Date = { Date() },
        logger: Logger = Logger(label: "beeldzorg.store")
    ) {
        self.retention = retention
        self.durability = durability
        self.now = now
        self.logger = logger
    }
}

/// What went wrong with the database file at open, when the store had to start afresh.
/// The daemon reports it as a fault; the technician finds the old file at `movedAsideTo`.
public struct StoreOpenFault: Sendable, Equatable, CustomStringConvertible {
    /// Why the file was not usable (SQLite's message or the integrity check's findings).
    public var reason: String
    /// Where the unusable file was kept (`<name>.corrupt-<UTC timestamp>`), if it was moved.
    public var movedAsideTo: String?
    /// True when not even a fresh file could be created and the store lives in memory only
    /// (nothing survives a restart; see ``BeeldzorgStore/openOrFallBackToMemory(path:options:)``).
    public var inMemoryFallback: Bool

    public var description: String {
        var s = "database unusable: \(reason)"
        if let movedAsideTo { s += "; kept as \(movedAsideTo)" }
        if inMemoryFallback { s += "; running on an in-memory database" }
        return s
    }
}

/// Errors from the store's API (besides SQLite's own, which pass through).
public enum StoreError: Error, Equatable, CustomStringConvertible {
    case invalidContact(id: String, reason: String)
    case unknownCall(id: String)
    case callAlreadyEnded(id: String)
    case unknownOutboxItem(id: String)
    case unknownCallbackRequest(id: String)
    case notInitialised(path: String)
    case cannotCreate(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidContact(let id, let reason): "contact \(id): \(reason)"
        case .unknownCall(let id): "no call record with id \(id)"
        case .callAlreadyEnded(let id): "call \(id) has already ended"
        case .unknownOutboxItem(let id): "no outbox item with id \(id)"
        case .unknownCallbackRequest(let id): "no callback request with id \(id)"
        case .notInitialised(let path): "\(path) has not been initialised by beeldzorgd"
        case .cannotCreate(let path, let reason): "cannot create database at \(path): \(reason)"
        }
    }
}

/// The one owner of the tablet's SQLite database: contacts, call log, settings, callback
/// requests and the upload outbox.
///
/// Opening migrates the schema, checks integrity, marks calls left unfinished by a crash
/// as `interrupted`, and prunes the call log. A file that is corrupt or unreadable is
/// moved aside and replaced by a fresh database; ``openFault`` then says what happened.
/// Every write is one transaction committed with `synchronous=FULL` in WAL mode.
public final class BeeldzorgStore: Sendable {
    /// The database file, or `nil` for an in-memory store.
    public let path: String?
    /// Set when the file at `path` could not be used as it was; `nil` after a clean open.
    public let openFault: StoreOpenFault?
    public let retention: RetentionPolicy

    let writer: any DatabaseWriter
    let logger: Logger

    init(
        writer: any DatabaseWriter, path: String?, fault: StoreOpenFault?, options: StoreOptions
    ) {
        self.writer = writer
        self.path = path
        self.openFault = fault
        self.retention = options.retention
        self.logger = options.logger
    }

    /// A fresh, empty, migrated store in memory (tests; the daemon's last resort).
    public static func inMemory(options: StoreOptions = StoreOptions()) throws -> BeeldzorgStore {
        let queue = try DatabaseQueue(configuration: makeConfiguration(options))
        try Schema.migrator.migrate(queue)
        return BeeldzorgStore(writer: queue, path: nil, fault: nil, options: options)
    }

    /// Opens (creating if needed) the database at `path` in WAL mode.
    ///
    /// If the existing file is corrupt or unreadable it is moved aside to
    /// `<path>.corrupt-<timestamp>` (with its `-wal`), a fresh database is created, and
    /// ``openFault`` describes what happened. Throws only when no usable database can be
    /// created at `path` at all, or on transient conditions (locked, disk full) where
    /// moving the file aside would be wrong.
    public convenience init(path: String, options: StoreOptions = StoreOptions()) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true)
        }
        do {
            let pool = try Self.openChecked(path: path, options: options)
            self.init(writer: pool, path: path, fault: nil, options: options)
        } catch let damage as DatabaseDamage {
            let movedTo = try Self.moveAside(path: path, now: options.now())
            options.logger.error(
                "database unusable, moved aside",
                metadata: ["reason": "\(damage.reason)", "keptAs": "\(movedTo ?? "-")"])
            let pool: DatabasePool
            do {
                pool = try Self.openChecked(path: path, options: options)
            } catch {
                throw StoreError.cannotCreate(path: path, reason: "\(error)")
            }
            let fault = StoreOpenFault(
                reason: damage.reason, movedAsideTo: movedTo, inMemoryFallback: false)
            self.init(writer: pool, path: path, fault: fault, options: options)
        }
        try finishOpen(now: options.now())
    }

    /// Like ``init(path:options:)`` but never fails: when no database can be used at
    /// `path`, returns an in-memory store whose ``openFault`` says so, so the daemon can
    /// still call the centrale from its configuration.
    public static func openOrFallBackToMemory(
        path: String, options: StoreOptions = StoreOptions()
    ) -> BeeldzorgStore {
        do {
            return try BeeldzorgStore(path: path, options: options)
        } catch {
            options.logger.critical(
                "no usable database, falling back to memory", metadata: ["error": "\(error)"])
            // An in-memory SQLite database only fails to open when memory is exhausted;
            // there is nothing sensible left to do then.
            let queue = try! DatabaseQueue(configuration: makeConfiguration(options))
            try! Schema.migrator.migrate(queue)
            let fault = StoreOpenFault(
                reason: "\(error)", movedAsideTo: nil, inMemoryFallback: true)
            return BeeldzorgStore(writer: queue, path: path, fault: fault, options: options)
        }
    }

    /// Opens an existing database read-only, for the technician's CLI: no migration, no
    /// repair, no pruning. Throws if the file is missing or was never migrated.
    public static func openReadOnly(path: String) throws -> BeeldzorgStore {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError.notInitialised(path: path)
        }
        var config = Configuration()
        config.readonly = true
        config.label = "beeldzorg.store.readonly"
        config.busyMode = .timeout(5)
        let queue = try DatabaseQueue(path: path, configuration: config)
        let migrated = try queue.read { db in
            try Set(Schema.migrator.appliedMigrations(db)).isSuperset(of: Schema.migrationNames)
        }
        guard migrated else { throw StoreError.notInitialised(path: path) }
        return BeeldzorgStore(
            writer: queue, path: path, fault: nil,
            options: StoreOptions(logger: Logger(label: "beeldzorg.store.readonly")))
    }

    /// Copies everything in the WAL into the main file and truncates the WAL, so the main
    /// file alone is a complete database (before a backup, at shutdown).
    public func checkpoint() throws {
        try writer.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }

    /// Checkpoints (best effort; a reader in another process may hold it back) and closes
    /// the connections. Any use afterwards throws. Releasing the store closes it too, but
    /// without the checkpoint.
    public func close() throws {
        if path != nil { try? checkpoint() }
        try writer.close()
    }

    /// `PRAGMA integrity_check`'s findings: `["ok"]` for a sound database.
    public func integrityCheck() throws -> [String] {
        try writer.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
    }

    /// The names of the migrations applied to this database, oldest first.
    public func appliedMigrations() throws -> [String] {
        try writer.read { db in try Schema.migrator.appliedMigrations(db) }
    }

    // MARK: - Opening

    struct DatabaseDamage: Error {
        var reason: String
    }

    static func makeConfiguration(_ options: StoreOptions) -> Configuration {
        var config = Configuration()
        config.label = "beeldzorg.store"
        config.foreignKeysEnabled = true
        // Readers in other processes (beeldzorgctl) never block the writer in WAL mode, but
        // a checkpoint or a second writer may hold the lock briefly.
        config.busyMode = .timeout(5)
        let pragma = options.durability.pragmaValue
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(pragma)")
        }
        return config
    }

    /// Opens the pool, checks integrity and migrates. Any sign that the file itself is bad
    /// becomes `DatabaseDamage`; conditions that moving the file aside would not fix
    /// (busy, locked, disk full, out of memory) are rethrown as they are.
    private static func openChecked(path: String, options: StoreOptions) throws -> DatabasePool {
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: makeConfiguration(options))
            // GRDB switches a pool's connections to synchronous=NORMAL when it enables WAL,
            // after prepareDatabase has run; set the writer's mode again. (The pool keeps
            // its one writer connection for its whole life.) Found by counting fdatasync
            // calls of the benchmark under strace.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = \(options.durability.pragmaValue)")
            }
        } catch {
            throw classify(error, path: path, stage: "open")
        }
        do {
            let findings = try pool.read { db in
                try String.fetchAll(db, sql: "PRAGMA quick_check")
            }
            guard findings == ["ok"] else {
                try? pool.close()
                throw DatabaseDamage(
                    reason: "quick_check: " + findings.prefix(5).joined(separator: "; "))
            }
            try Schema.migrator.migrate(pool)
        } catch let damage as DatabaseDamage {
            throw damage
        } catch {
            try? pool.close()
            throw classify(error, path: path, stage: "check")
        }
        return pool
    }

    private static func classify(_ error: any Error, path: String, stage: String) -> any Error {
        guard let dbError = error as? DatabaseError else { return error }
        switch dbError.resultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED, .SQLITE_FULL, .SQLITE_NOMEM, .SQLITE_INTERRUPT:
            return error
        case .SQLITE_CANTOPEN where !FileManager.default.fileExists(atPath: path):
            // Nothing to move aside: the directory is missing or not writable.
            return error
        default:
            // NOTADB, CORRUPT, IOERR, CANTOPEN/PERM/READONLY on an existing file, or a
            // migration that fails against a schema that is not ours.
            return DatabaseDamage(reason: "\(stage): \(dbError.message ?? "\(dbError.resultCode)")")
        }
    }

    /// Renames `path` (and its `-wal`, `-shm`, `-journal`) to `path.corrupt-<timestamp>…`
    /// so that `sqlite3 path.corrupt-<timestamp>` still sees the WAL. Returns the new main
    /// file name, or `nil` if there was no main file.
    private static func moveAside(path: String, now: Date) throws -> String? {
        let fm = FileManager.default
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        var target = "\(path).corrupt-\(formatter.string(from: now))"
        var n = 1
        while fm.fileExists(atPath: target) {
            n += 1
            target = "\(path).corrupt-\(formatter.string(from: now))-\(n)"
        }
        let hadMain = fm.fileExists(atPath: path)
        for suffix in ["", "-wal", "-shm", "-journal"] where fm.fileExists(atPath: path + suffix) {
            do {
                try fm.moveItem(atPath: path + suffix, toPath: target + suffix)
            } catch {
                throw StoreError.cannotCreate(
                    path: path, reason: "cannot move unusable file aside: \(error)")
            }
        }
        return hadMain ? target : nil
    }

    /// Work done after every successful open: close calls left open by a crash, prune.
    private func finishOpen(now: Date) throws {
        let interrupted = try markInterruptedCalls(at: now)
        if interrupted > 0 {
            logger.warning("calls left unfinished by an earlier run", metadata: ["count": "\(interrupted)"])
        }
        _ = try pruneCallLog(now: now)
    }
}
