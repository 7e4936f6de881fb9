public import Foundation
public import Store

/// The document the organisation's server returns for one tablet: its contact list and
/// its settings. The format is specified by docs/provisioning.schema.json; this file checks
/// the same rules (and a few the schema cannot express: unique ids and SIP addresses).
public struct ProvisioningDocument: Sendable, Equatable {
    public static let schemaVersion = 1
    public static let maxContacts = 500

    public var contacts: [Contact]
    /// Free-form settings for the daemon; stored as `provisioned.<key>`.
    public var settings: [String: String]

    public init(contacts: [Contact], settings: [String: String]) {
        self.contacts = contacts
        self.settings = settings
    }

    /// Parses and validates a document. Throws ``ProvisioningRejection`` with a reason that
    /// names the offending place as a JSON Pointer (e.g. `/contacts/2/role`).
    public static func parse(_ data: Data) throws(ProvisioningRejection) -> ProvisioningDocument {
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw ProvisioningRejection("malformed JSON (\(Self.describe(error)))")
        }
        let top = try root.object(at: "")
        try top.allowOnly(["schemaVersion", "contacts", "settings"], at: "")
        let version = try top.required("schemaVersion", at: "").integer(at: "/schemaVersion")
        guard version == schemaVersion else {
            throw ProvisioningRejection("/schemaVersion: \(version) is not supported (expected \(schemaVersion))")
        }
        let list = try top.required("contacts", at: "").array(at: "/contacts")
        guard list.count <= maxContacts else {
            throw ProvisioningRejection("/contacts: \(list.count) contacts, at most \(maxContacts) allowed")
        }
        var contacts: [Contact] = []
        for (index, item) in list.enumerated() {
            contacts.append(try parseContact(item, at: "/contacts/\(index)"))
        }
        var settings: [String: String] = [:]
        if let value = top["settings"] {
            let object = try value.object(at: "/settings")
            guard object.count <= 200 else {
                throw ProvisioningRejection("/settings: more than 200 settings")
            }
            for (key, value) in object {
                let path = "/settings/\(key)"
                guard (1...64).contains(key.count),
                    key.unicodeScalars.allSatisfy({ settingKeyCharacters.contains($0) })
                else {
                    throw ProvisioningRejection("\(path): key must be 1–64 characters of A–Z a–z 0–9 . _ -")
                }
                settings[key] = try value.string(at: path, length: 0...1024)
            }
        }
        do {
            try BeeldzorgStore.validate(contacts)
        } catch let error as StoreError {
            throw ProvisioningRejection("/contacts: \(error)")
        } catch {
            throw ProvisioningRejection("/contacts: \(error)")
        }
        return ProvisioningDocument(contacts: contacts, settings: settings)
    }

    private static let settingKeyCharacters = CharacterSet(
        charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

    private static func parseContact(_ value: JSONValue, at path: String) throws(ProvisioningRejection) -> Contact {
        let object = try value.object(at: path)
        try object.allowOnly(
            ["id", "displayName", "sipURI", "role", "autoAnswerSeconds", "photoRef", "sortOrder"], at: path)
        let id = try object.required("id", at: path).string(at: path + "/id", length: 1...64)
        let name = try object.required("displayName", at: path)
            .string(at: path + "/displayName", length: 1...100)
        let uri = try object.required("sipURI", at: path).string(at: path + "/sipURI", length: 5...256)
        let lower = uri.lowercased()
        guard lower.hasPrefix("sip:") || lower.hasPrefix("sips:") else {
            throw ProvisioningRejection("\(path)/sipURI: must start with sip: or sips:")
        }
        let roleText = try object.required("role", at: path).string(at: path + "/role", length: 1...32)
        guard let role = ContactRole(rawValue: roleText) else {
            throw ProvisioningRejection(
                "\(path)/role: must be one of \(ContactRole.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var autoAnswer: Int? = nil
        if let value = object["autoAnswerSeconds"], value != .null {
            let seconds = try value.integer(at: path + "/autoAnswerSeconds")
            guard (0...600).contains(seconds) else {
                throw ProvisioningRejection("\(path)/autoAnswerSeconds: must be 0…600 or null")
            }
            autoAnswer = seconds
        }
        var photo: String? = nil
        if let value = object["photoRef"], value != .null {
            photo = try value.string(at: path + "/photoRef", length: 1...512)
        }
        let order = try object.required("sortOrder", at: path).integer(at: path + "/sortOrder")
        guard (0...100_000).contains(order) else {
            throw ProvisioningRejection("\(path)/sortOrder: must be 0…100000")
        }
        return Contact(
            id: id, displayName: name, sipURI: uri, role: role, autoAnswerSeconds: autoAnswer,
            photoRef: photo, sortOrder: order)
    }

    private static func describe(_ error: any Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error {
            let underlying = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return underlying ?? context.debugDescription
        }
        return "\(error)"
    }
}

/// Why a provisioning document was refused. The previous data stays in place.
public struct ProvisioningRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// A JSON value that keeps true/false apart from numbers and integers apart from
/// fractions, so that the checks above mean what the schema says.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .integer, .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    func object(at path: String) throws(ProvisioningRejection) -> [String: JSONValue] {
        guard case .object(let value) = self else { throw mismatch("an object", at: path) }
        return value
    }

    func array(at path: String) throws(ProvisioningRejection) -> [JSONValue] {
        guard case .array(let value) = self else { throw mismatch("an array", at: path) }
        return value
    }

    func integer(at path: String) throws(ProvisioningRejection) -> Int {
        guard case .integer(let value) = self else { throw mismatch("an integer", at: path) }
        return value
    }

    func string(at path: String, length: ClosedRange<Int>) throws(ProvisioningRejection) -> String {
        guard case .string(let value) = self else { throw mismatch("a string", at: path) }
        guard length.contains(value.count) else {
            throw ProvisioningRejection(
                "\(path.isEmpty ? "/" : path): length \(value.count), must be \(length.lowerBound)…\(length.upperBound)")
        }
        return value
    }

    private func mismatch(_ expected: String, at path: String) -> ProvisioningRejection {
        ProvisioningRejection("\(path.isEmpty ? "/" : path): must be \(expected), found \(typeName)")
    }
}

extension [String: JSONValue] {
    func required(_ key: String, at path: String) throws(ProvisioningRejection) -> JSONValue {
        guard let value = self[key] else {
            throw ProvisioningRejection("\(path.isEmpty ? "/" : path): missing \"\(key)\"")
        }
        return value
    }

    func allowOnly(_ keys: Set<String>, at path: String) throws(ProvisioningRejection) {
        if let unknown = self.keys.sorted().first(where: { !keys.contains($0) }) {
            throw ProvisioningRejection("\(path.isEmpty ? "/" : path): unknown property \"\(unknown)\"")
        }
    }
}
