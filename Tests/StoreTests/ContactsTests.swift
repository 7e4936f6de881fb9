import Foundation
import Testing
@testable import Store

@Suite("Contacts")
struct ContactsTests {
    let list = [
        contact("p1", "Centrale", "sip:post1@centrale.example", role: .centralePost, order: 0),
        contact("f2", "Zus Anna", "sip:anna@family.example", order: 2, autoAnswer: 10),
        contact("f1", "Broer Piet", "sips:piet@family.example", order: 1),
    ]

    @Test func replaceAndListInOrder() throws {
        let store = try BeeldzorgStore.inMemory()
        try store.replaceContacts(list)
        #expect(try store.contacts().map(\.id) == ["p1", "f1", "f2"])
        #expect(try store.contacts().first { $0.id == "f2" } == list[1])

        try store.replaceContacts([list[0]])
        #expect(try store.contacts() == [list[0]])
    }

    @Test func lookupNormalisesURI() throws {
        let store = try BeeldzorgStore.inMemory()
        try store.replaceContacts(list)
        #expect(try store.contact(forURI: "\"Anna\" <sip:anna@FAMILY.example;transport=tls>")?.id == "f2")
        #expect(try store.contact(forURI: "sip:piet@family.example:5061")?.id == "f1")
        #expect(try store.contact(forURI: "sip:stranger@family.example") == nil)
        #expect(try store.contact(forURI: "garbage <") == nil)
    }

    @Test func replaceIsAllOrNothing() throws {
        let store = try BeeldzorgStore.inMemory()
        try store.replaceContacts(list)
        let bad = [
            contact("n1", "Nieuw", "sip:nieuw@x.example", order: 1),
            contact("n2", "Dubbel", "sip:NIEUW@x.example:5060", order: 2),
        ]
        // Same user@host only differing in case of the user part: distinct users.
        try store.replaceContacts(bad)
        #expect(try store.contacts().map(\.id) == ["n1", "n2"])

        let duplicate = [
            contact("d1", "Een", "sip:same@x.example", order: 1),
            contact("d2", "Twee", "<sips:same@X.example;transport=tls>", order: 2),
        ]
        #expect(throws: StoreError.self) { try store.replaceContacts(duplicate) }
        #expect(try store.contacts().map(\.id) == ["n1", "n2"])

        let invalid = [
            contact("ok", "Goed", "sip:ok@x.example", order: 1),
            contact("bad", "Fout", "not a uri <", order: 2),
        ]
        #expect(throws: StoreError.invalidContact(id: "bad", reason: "not a SIP address: not a uri <")) {
            try store.replaceContacts(invalid)
        }
        #expect(try store.contacts().map(\.id) == ["n1", "n2"])
    }

    @Test func upsertAndRemove() throws {
        let store = try BeeldzorgStore.inMemory()
        try store.replaceContacts(list)
        var anna = list[1]
        anna.displayName = "Anna"
        anna.autoAnswerSeconds = nil
        try store.upsertContact(anna)
        #expect(try store.contact(forURI: "sip:anna@family.example") == anna)
        try store.upsertContact(contact("f3", "Oom Kees", "sip:kees@family.example", order: 3))
        #expect(try store.contacts().count == 4)
        #expect(try store.removeContact(id: "f3"))
        #expect(try !store.removeContact(id: "f3"))
        // Upsert of another id with an existing address is refused by the schema.
        #expect(throws: (any Error).self) {
            try store.upsertContact(contact("f4", "Kloon", "sip:anna@family.example", order: 4))
        }
    }
}

@Suite("Provisioning apply")
struct ProvisioningApplyTests {
    @Test func appliesAllOrNothing() throws {
        let store = try BeeldzorgStore.inMemory()
        try store.setSetting("local", to: "kept")
        let first = [contact("a", "Anna", "sip:anna@h", order: 1)]
        try store.applyProvisioning(contacts: first, settings: ["volume": "7", "lang": "nl"], etag: "\"1\"", at: t(0))
        #expect(try store.contacts() == first)
        #expect(try store.provisionedSettings() == ["volume": "7", "lang": "nl"])
        #expect(try store.provisioningState() == ProvisioningState(etag: "\"1\"", appliedAt: t(0), lastAttemptAt: nil, lastResult: nil))

        // A bad second document changes nothing at all.
        let bad = [contact("b", "Bert", "sip:bert@h", order: 1), contact("c", "Cor", "sip:BERT@H", order: 2).with(uri: "sips:bert@h")]
        #expect(throws: StoreError.self) {
            try store.applyProvisioning(contacts: bad, settings: ["volume": "9"], etag: "\"2\"", at: t(10))
        }
        #expect(try store.contacts() == first)
        #expect(try store.provisionedSettings() == ["volume": "7", "lang": "nl"])
        #expect(try store.provisioningState().etag == "\"1\"")

        // A good one replaces contacts and every provisioned setting, not local ones.
        try store.applyProvisioning(contacts: [], settings: ["volume": "9"], etag: nil, at: t(20))
        #expect(try store.contacts().isEmpty)
        #expect(try store.provisionedSettings() == ["volume": "9"])
        #expect(try store.setting("local") == "kept")
        #expect(try store.provisioningState().etag == nil)

        try store.recordProvisioningAttempt(result: "not modified", at: t(30))
        #expect(try store.provisioningState().lastAttemptAt == t(30))
        #expect(try store.provisioningState().lastResult == "not modified")
    }
}

extension Contact {
    fileprivate func with(uri: String) -> Contact {
        var copy = self
        copy.sipURI = uri
        return copy
    }
}
