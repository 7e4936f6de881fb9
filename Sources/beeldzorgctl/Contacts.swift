import ArgumentParser
import Control
import Foundation
import Store

/// Where the technician commands that read personal data (`calls`, `contacts`) get it: from
/// beeldzorgd over its control socket, which answers root and the beeldzorg-tech group (the
/// daemon checks the caller's credentials), so `tech` needs no access to the 0700 state
/// directory; only when the daemon is not running is the database opened directly (read-only,
/// never migrated or repaired; that needs root on the image).
struct DatabaseOptions: ParsableArguments {
    static let defaultPath = "/var/lib/beeldzorg/beeldzorg.sqlite"

    @Option(name: .long, help: "The tablet's database, read directly only while beeldzorgd is not running.")
    var database: String = ProcessInfo.processInfo.environment["BEELDZORG_DATABASE"] ?? DatabaseOptions.defaultPath

    @Option(name: .long, help: "The daemon's control socket, asked first.")
    var socket: String = ProcessInfo.processInfo.environment["BEELDZORG_CONTROL_SOCKET"] ?? ControlProtocol.defaultSocketPath

    @Flag(name: .long, help: "Print a JSON array instead of a table.")
    var json = false

    /// The daemon's answer, or nil when beeldzorgd is not running (the caller then reads the
    /// file). A refusal is one sentence and exit 4 (not allowed) or 1.
    func askDaemon<T: Decodable>(_ request: ControlRequest, as type: T.Type) throws -> T? {
        do {
            let response = try ControlClient(socketPath: socket, timeout: .seconds(10)).send(request)
            guard response.ok else {
                let error = response.error ?? ControlError(.internal, "unknown error")
                fail(error.message)
                throw error.code == .forbidden ? ExitCode(4) : ExitCode(1)
            }
            return try response.decodeResult(T.self)
        } catch let failure as ControlClient.Failure {
            switch failure {
            case .daemonNotRunning:
                return nil
            case .permissionDenied:
                fail("\(failure.description) (run as root or a member of the beeldzorg-tech group)")
                throw ExitCode(4)
            case .io:
                fail("\(failure.description)")
                throw ExitCode(1)
            }
        }
    }

    /// Opens the store read-only, or prints one sentence and exits: 1 when the file is
    /// missing or not a beeldzorgd database, 4 when it may not be read.
    func openStore() throws -> BeeldzorgStore {
        let fm = FileManager.default
        let directory = (database as NSString).deletingLastPathComponent
        if access(directory, X_OK) != 0 && errno == EACCES
            || fm.fileExists(atPath: database) && !fm.isReadableFile(atPath: database) {
            fail("beeldzorgd is not running (no answer on \(socket)), and without it \(database) may only be read by root; start beeldzorgd (`systemctl start beeldzorgd`) or run as root")
            throw ExitCode(4)
        }
        do {
            return try BeeldzorgStore.openReadOnly(path: database)
        } catch StoreError.notInitialised {
            fail("no database at \(database) (has beeldzorgd run on this tablet?)")
            throw ExitCode(1)
        } catch {
            fail("cannot read \(database): \(error)")
            throw ExitCode(1)
        }
    }

    func fail(_ message: String) {
        FileHandle.standardError.write(Data("beeldzorgctl: \(message)\n".utf8))
    }
}

/// `beeldzorgctl contacts`: the contact list as the tablet has it.
struct ContactsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contacts",
        abstract: "List the contacts stored on this tablet, in the order the client sees them.",
        discussion: """
            Only these contacts can call the tablet. Asks beeldzorgd (root or the beeldzorg-tech \
            group); while it is stopped, reads the database directly (root).

            Exit status: 0 listed; 1 no database or it cannot be read; 4 not allowed (not root \
            or beeldzorg-tech, or beeldzorgd is stopped and you are not root).
            """
    )

    @OptionGroup var options: DatabaseOptions

    func run() throws {
        let contacts = try options.askDaemon(ControlRequest(cmd: .contacts), as: [Contact].self)
            ?? options.openStore().contacts()
        if options.json {
            print(try Self.json(contacts))
        } else {
            print(Self.table(contacts), terminator: "")
        }
    }

    static func table(_ contacts: [Contact]) -> String {
        if contacts.isEmpty { return "No contacts.\n" }
        var table = TextTable(["#", "NAME", "ROLE", "SIP URI", "AUTO-ANSWER", "PHOTO", "ID"])
        for c in contacts {
            table.add([
                String(c.sortOrder), c.displayName, roleText(c.role), c.sipURI,
                c.autoAnswerSeconds.map { "after \($0) s" } ?? "off", c.photoRef ?? "-", c.id,
            ])
        }
        return table.render()
    }

    static func roleText(_ role: ContactRole) -> String {
        switch role {
        case .centralePost: "centrale post"
        case .family: "family"
        case .professional: "professional"
        }
    }

    /// Every key always present (null when empty), so scripts can rely on the shape.
    struct JSONContact: Encodable {
        var contact: Contact
        enum Keys: String, CodingKey {
            case id, displayName, sipURI, role, autoAnswerSeconds, photoRef, sortOrder
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(contact.id, forKey: .id)
            try c.encode(contact.displayName, forKey: .displayName)
            try c.encode(contact.sipURI, forKey: .sipURI)
            try c.encode(contact.role.rawValue, forKey: .role)
            try c.encode(contact.autoAnswerSeconds, forKey: .autoAnswerSeconds)
            try c.encode(contact.photoRef, forKey: .photoRef)
            try c.encode(contact.sortOrder, forKey: .sortOrder)
        }
    }

    static func json(_ contacts: [Contact]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(contacts.map(JSONContact.init)), as: UTF8.self)
    }
}

/// Left-aligned columns separated by two spaces, widths from the widest cell (counted in
/// characters, so names with accents line up).
struct TextTable {
    private var rows: [[String]]

    init(_ header: [String]) {
        rows = [header]
    }

    mutating func add(_ row: [String]) {
        precondition(row.count == rows[0].count, "row has \(row.count) cells, header \(rows[0].count)")
        rows.append(row.map { $0.replacingOccurrences(of: "\n", with: " ") })
    }

    func render() -> String {
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        var out = ""
        for row in rows {
            var line = ""
            for (column, cell) in row.enumerated() {
                if column == row.count - 1 {
                    line += cell
                } else {
                    line += cell + String(repeating: " ", count: widths[column] - cell.count + 2)
                }
            }
            while line.hasSuffix(" ") { line.removeLast() }
            out += line + "\n"
        }
        return out
    }
}
