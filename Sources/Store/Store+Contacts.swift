internal import Foundation
internal import GRDB

extension BeeldzorgStore {
    /// Replaces the whole contact list in one transaction: afterwards the table holds
    /// exactly `contacts`, or (on any error) exactly what it held before.
    public func replaceContacts(_ contacts: [Contact]) throws {
        let rows = try Self.validated(contacts)
        try writer.write { db in
            try db.execute(sql: "DELETE FROM contact")
            for (contact, key) in rows {
                try Self.insert(contact, key: key, db: db, upsert: false)
            }
        }
    }

    /// Inserts a contact, or replaces the one with the same `id`.
    public func upsertContact(_ contact: Contact) throws {
        let rows = try Self.validated([contact])
        try writer.write { db in
            try Self.insert(rows[0].0, key: rows[0].1, db: db, upsert: true)
        }
    }

    /// Removes a contact; returns whether it existed.
    @discardableResult
    public func removeContact(id: String) throws -> Bool {
        try writer.write { db in
            try db.execute(sql: "DELETE FROM contact WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }

    /// All contacts in the order the client sees them.
    public func contacts() throws -> [Contact] {
        try writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM contact ORDER BY sortOrder, displayName, id")
                .map(Contact.init(row:))
        }
    }

    /// The contact whose SIP address matches `uri` by user@host (see ``SIPAddressKey``);
    /// `uri` may be a bare URI or a `From`-style name-addr with display name and parameters.
    public func contact(forURI uri: String) throws -> Contact? {
        guard let key = SIPAddressKey.normalise(uri) else { return nil }
        return try writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM contact WHERE uriKey = ?", arguments: [key])
                .map(Contact.init(row:))
        }
    }

    /// Checks a contact list the way ``replaceContacts(_:)`` would (ids, names, SIP
    /// addresses unique after normalisation, auto-answer range) without writing anything.
    public static func validate(_ contacts: [Contact]) throws {
        _ = try validated(contacts)
    }

    // MARK: - Internals

    /// Checks what the schema would reject, with reasons a provisioning report can show.
    static func validated(_ contacts: [Contact]) throws -> [(Contact, String)] {
        var ids = Set<String>()
        var keys = [String: String]()
        return try contacts.map { c in
            guard !c.id.isEmpty else {
                throw StoreError.invalidContact(id: c.id, reason: "empty id")
            }
            guard ids.insert(c.id).inserted else {
                throw StoreError.invalidContact(id: c.id, reason: "duplicate id")
            }
            guard !c.displayName.isEmpty else {
                throw StoreError.invalidContact(id: c.id, reason: "empty display name")
            }
            guard let key = SIPAddressKey.normalise(c.sipURI) else {
                throw StoreError.invalidContact(id: c.id, reason: "not a SIP address: \(c.sipURI)")
            }
            if let other = keys[key] {
                throw StoreError.invalidContact(
                    id: c.id, reason: "same SIP address as contact \(other)")
            }
            keys[key] = c.id
            if let s = c.autoAnswerSeconds, !(0...600).contains(s) {
                throw StoreError.invalidContact(
                    id: c.id, reason: "autoAnswerSeconds \(s) outside 0…600")
            }
            return (c, key)
        }
    }

    private static func insert(_ c: Contact, key: String, db: Database, upsert: Bool) throws {
        let conflict =
            upsert
            ? """
             ON CONFLICT(id) DO UPDATE SET displayName = excluded.displayName,
                sipURI = excluded.sipURI, uriKey = excluded.uriKey, role = excluded.role,
                autoAnswerSeconds = excluded.autoAnswerSeconds, photoRef = excluded.photoRef,
                sortOrder = excluded.sortOrder
            """ : ""
        try db.execute(
            sql: """
                INSERT INTO contact (id, displayName, sipURI, uriKey, role, autoAnswerSeconds,
                    photoRef, sortOrder) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """ + conflict,
            arguments: [
                c.id, c.displayName, c.sipURI, key, c.role.rawValue, c.autoAnswerSeconds,
                c.photoRef, c.sortOrder,
            ])
    }
}

extension Contact {
    init(row: Row) throws {
        let roleText: String = row["role"]
        guard let role = ContactRole(rawValue: roleText) else {
            throw StoreError.invalidContact(id: row["id"], reason: "unknown role \(roleText)")
        }
        self.init(
            id: row["id"], displayName: row["displayName"], sipURI: row["sipURI"], role: role,
            autoAnswerSeconds: row["autoAnswerSeconds"], photoRef: row["photoRef"],
            sortOrder: row["sortOrder"])
    }
}
