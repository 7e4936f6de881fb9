import ArgumentParser
import Foundation
import Store

/// Where the technician commands that read the store find it. They open it read-only and
/// never migrate or repair it; beeldzorgd owns the file.
struct DatabaseOptions: ParsableArguments {
    static let defaultPath = "/var/lib/beeldzorg/beeldzorg.sqlite"

    @Option(name: .long, help: "The tablet's database (read-only).")
    var database: String = ProcessInfo.processInfo.environment["BEELDZORG_DATABASE"] ?? DatabaseOptions.defaultPath

    @Flag(name: .long, help: "Print a JSON array instead of a table.")
    var json = false

    /// Opens the store read-only, or prints one sentence and exits: 1 when the file is
    /// missing or not a beeldzorgd database, 4 when it may not be read.
    func openStore() throws -> BeeldzorgStore {
        let fm = FileManager.default
        if fm.fileExists(atPath: database), !fm.isReadableFile(atPath: database) {
            fail("no permission to read \(database) (run as root or a member of the beeldzorg-tech group)")
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
            Only these contacts can call the tablet. Reads the database directly, so it works \
            while beeldzorgd is stopped.
            """
    )

    @OptionGroup var options: DatabaseOptions

    func run() throws {
        let store = try options.openStore()
        let contacts = try store.contacts()
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
