import Foundation
import Provisioning
import Store
import Testing

@Suite("Provisioning document")
struct DocumentTests {
    static func doc(contacts: String = "[]", extra: String = "") -> String {
        #"{"schemaVersion": 1, "contacts": \#(contacts)\#(extra)}"#
    }

    static func contact(_ fields: String) -> String {
        #"[{"id": "a", "displayName": "Anna", "sipURI": "sip:anna@h", "role": "family", "sortOrder": 1\#(fields)}]"#
    }

    /// (document, expected reason) pairs. Each is also checked against
    /// docs/provisioning.schema.json by `schemaFileAgrees` when Python's jsonschema exists.
    static let rejected: [(String, String)] = [
        ("[]", "/: must be an object, found array"),
        (#"{"contacts": []}"#, "/: missing \"schemaVersion\""),
        (#"{"schemaVersion": 2, "contacts": []}"#, "/schemaVersion: 2 is not supported (expected 1)"),
        (#"{"schemaVersion": "1", "contacts": []}"#, "/schemaVersion: must be an integer, found string"),
        (#"{"schemaVersion": 1}"#, "/: missing \"contacts\""),
        (doc(extra: #", "posts": []"#), "/: unknown property \"posts\""),
        (doc(contacts: "{}"), "/contacts: must be an array, found object"),
        (doc(contacts: contact(#", "role": "boss""#).replacingOccurrences(of: #""role": "family", "#, with: "")),
         "/contacts/0/role: must be one of centralePost, family, professional"),
        (doc(contacts: contact(#", "autoAnswerSeconds": 601"#)), "/contacts/0/autoAnswerSeconds: must be 0…600 or null"),
        (doc(contacts: contact(#", "autoAnswerSeconds": true"#)), "/contacts/0/autoAnswerSeconds: must be an integer, found boolean"),
        (doc(contacts: contact(#", "autoAnswerSeconds": 2.5"#)), "/contacts/0/autoAnswerSeconds: must be an integer, found number"),
        (doc(contacts: contact(#", "nickname": "An""#)), "/contacts/0: unknown property \"nickname\""),
        (doc(contacts: #"[{"id": "a", "displayName": "", "sipURI": "sip:a@h", "role": "family", "sortOrder": 1}]"#),
         "/contacts/0/displayName: length 0, must be 1…100"),
        (doc(contacts: #"[{"id": "a", "displayName": "A", "sipURI": "tel:+3120", "role": "family", "sortOrder": 1}]"#),
         "/contacts/0/sipURI: must start with sip: or sips:"),
        (doc(contacts: #"[{"id": "a", "displayName": "A", "sipURI": "sip:a@h", "role": "family"}]"#),
         "/contacts/0: missing \"sortOrder\""),
        (doc(extra: #", "settings": {"bad key": "x"}"#), "/settings/bad key: key must be 1–64 characters of A–Z a–z 0–9 . _ -"),
        (doc(extra: #", "settings": {"volume": 7}"#), "/settings/volume: must be a string, found number"),
    ]

    /// Valid per the schema but refused by the rules the schema cannot express.
    static let rejectedBeyondSchema: [(String, String)] = [
        (doc(contacts: #"[{"id": "a", "displayName": "A", "sipURI": "sip:a@h", "role": "family", "sortOrder": 1}, {"id": "a", "displayName": "B", "sipURI": "sip:b@h", "role": "family", "sortOrder": 2}]"#),
         "/contacts: contact a: duplicate id"),
        (doc(contacts: #"[{"id": "a", "displayName": "A", "sipURI": "sip:a@h", "role": "family", "sortOrder": 1}, {"id": "b", "displayName": "B", "sipURI": "sips:a@H:5061", "role": "family", "sortOrder": 2}]"#),
         "/contacts: contact b: same SIP address as contact a"),
    ]

    static let accepted: [String] = [
        doc(),
        doc(contacts: contact("")),
        doc(contacts: contact(#", "autoAnswerSeconds": null, "photoRef": null"#), extra: #", "settings": {}"#),
        doc(contacts: contact(#", "autoAnswerSeconds": 0, "photoRef": "a.jpg""#), extra: #", "settings": {"a.b_c-d": ""}"#),
    ]

    @Test(arguments: rejected + rejectedBeyondSchema)
    func rejects(_ document: String, _ reason: String) {
        #expect(throws: ProvisioningRejection(reason)) {
            try ProvisioningDocument.parse(Data(document.utf8))
        }
    }

    @Test(arguments: accepted)
    func accepts(_ document: String) throws {
        _ = try ProvisioningDocument.parse(Data(document.utf8))
    }

    @Test func parsesFields() throws {
        let parsed = try ProvisioningDocument.parse(
            Data(Self.doc(contacts: Self.contact(#", "autoAnswerSeconds": 15, "photoRef": "anna.jpg""#),
                          extra: #", "settings": {"volume": "7"}"#).utf8))
        #expect(parsed.contacts == [Contact(id: "a", displayName: "Anna", sipURI: "sip:anna@h", role: .family, autoAnswerSeconds: 15, photoRef: "anna.jpg", sortOrder: 1)])
        #expect(parsed.settings == ["volume": "7"])
    }

    @Test func malformedJSONIsRejected() {
        #expect(throws: ProvisioningRejection.self) {
            try ProvisioningDocument.parse(Data(#"{"schemaVersion": 1, "contacts": [}"#.utf8))
        }
    }

    static var schemaPath: String {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/provisioning.schema.json").path
    }

    static var pythonHasJSONSchema: Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", "import jsonschema"]
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    /// docs/provisioning.schema.json and the Swift checks agree: the schema accepts every
    /// accepted document and those refused only beyond the schema, and refuses every
    /// other rejected one (checked with Python's jsonschema, a validator we did not write).
    @Test(.enabled(if: pythonHasJSONSchema, "needs python3 with jsonschema (pip install jsonschema)"))
    func schemaFileAgrees() throws {
        let cases = Self.accepted.map { ($0, true) }
            + Self.rejectedBeyondSchema.map { ($0.0, true) }
            + Self.rejected.map { ($0.0, false) }
        let input = try JSONSerialization.data(withJSONObject: cases.map { [$0.0, $0.1] as [Any] })
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [
            "-c",
            """
            import json, sys, jsonschema
            schema = json.load(open(sys.argv[1]))
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(schema)
            for document, expected in json.load(sys.stdin):
                valid = validator.is_valid(json.loads(document))
                if valid != expected:
                    print(("accepted" if valid else "rejected") + ": " + document)
            """,
            Self.schemaPath,
        ]
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let output = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(errors)")
        #expect(output == "", "schema disagrees with the Swift checks on:\n\(output)")
    }
}
