import Foundation
private import Yams

/// A configuration problem, naming the key and — where the YAML says — the line.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Dotted path of the offending key, e.g. `centrale.posts[1].uri`; empty for the whole file.
    public var key: String
    /// 1-based line in the file, when known.
    public var line: Int?
    public var message: String

    public init(key: String, line: Int?, message: String) {
        self.key = key
        self.line = line
        self.message = message
    }

    public var description: String {
        var where_ = key.isEmpty ? "configuration" : "'\(key)'"
        if let line { where_ += " (line \(line))" }
        return "\(where_): \(message)"
    }
}

/// Strict, position-aware access to one YAML mapping: every key read is remembered, and
/// `finish()` rejects the keys nobody asked for, so a typo (`polcy:`) is an error that names
/// the key and its line instead of a silently ignored setting.
struct ConfigReader {
    private let pairs: [(key: String, value: Node, line: Int?)]
    private let path: String
    private let line: Int?
    private var seen: Set<String> = []

    static func root(yaml: String) throws(ConfigError) -> ConfigReader {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigReader.describe(error)
        } catch {
            throw ConfigError(key: "", line: nil, message: "not valid YAML: \(error)")
        }
        guard let node else { throw ConfigError(key: "", line: nil, message: "the file is empty") }
        return try ConfigReader(node: node, path: "")
    }

    private init(node: Node, path: String) throws(ConfigError) {
        guard case .mapping(let mapping) = node else {
            throw ConfigError(key: path, line: node.mark?.line, message: "expected a mapping of keys to values")
        }
        var pairs: [(key: String, value: Node, line: Int?)] = []
        var keys: Set<String> = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                throw ConfigError(key: path, line: key.mark?.line, message: "keys must be plain words")
            }
            let name = scalar.string
            guard keys.insert(name).inserted else {
                throw ConfigError(key: Self.join(path, name), line: key.mark?.line, message: "given twice")
            }
            pairs.append((name, value, key.mark?.line))
        }
        self.pairs = pairs
        self.path = path
        self.line = node.mark?.line
    }

    private static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    private static func describe(_ error: YamlError) -> ConfigError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
             .composer(_, let problem, let mark, _):
            return ConfigError(key: "", line: mark.line, message: "not valid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, _):
            return ConfigError(key: duplicates.joined(separator: ", "), line: nil, message: "given twice")
        default:
            return ConfigError(key: "", line: nil, message: "not valid YAML: \(error)")
        }
    }

    private mutating func node(_ key: String) -> (Node, Int?)? {
        seen.insert(key)
        guard let pair = pairs.first(where: { $0.key == key }) else { return nil }
        if case .scalar(let scalar) = pair.value, scalar.tag.description.hasSuffix(":null") || scalar.string == "~" {
            return nil
        }
        return (pair.value, pair.value.mark?.line ?? pair.line)
    }

    private func error(_ key: String, _ line: Int?, _ message: String) -> ConfigError {
        ConfigError(key: Self.join(path, key), line: line ?? self.line, message: message)
    }

    func has(_ key: String) -> Bool { pairs.contains { $0.key == key } }

    // MARK: Typed access

    mutating func string(_ key: String) throws(ConfigError) -> String? {
        guard let (node, line) = node(key) else { return nil }
        guard case .scalar(let scalar) = node else { throw error(key, line, "expected text") }
        return scalar.string
    }

    mutating func requiredString(_ key: String) throws(ConfigError) -> String {
        guard let value = try string(key) else { throw error(key, line, "required but missing") }
        guard !value.trimmingCharacters(in: .whitespaces).isEmpty else { throw error(key, line, "must not be empty") }
        return value
    }

    mutating func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let (node, line) = node(key) else { return nil }
        guard case .scalar(let scalar) = node, let value = Int(scalar.string) else {
            throw error(key, line, "expected a whole number")
        }
        guard range.contains(value) else {
            throw error(key, line, "\(value) is out of range \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    mutating func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let (node, line) = node(key) else { return nil }
        guard case .scalar(let scalar) = node else { throw error(key, line, "expected true or false") }
        switch scalar.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(key, line, "expected true or false, not '\(scalar.string)'")
        }
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ key: String, _: T.Type) throws(ConfigError) -> T?
    where T.RawValue == String {
        guard let raw = try string(key) else { return nil }
        guard let value = T(rawValue: raw) else {
            let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw error(key, node(key)?.1, "'\(raw)' is not one of: \(allowed)")
        }
        return value
    }

    mutating func section(_ key: String) throws(ConfigError) -> ConfigReader? {
        guard let (node, _) = node(key) else { return nil }
        return try ConfigReader(node: node, path: Self.join(path, key))
    }

    mutating func sections(_ key: String) throws(ConfigError) -> [ConfigReader]? {
        guard let (node, line) = node(key) else { return nil }
        guard case .sequence(let sequence) = node else { throw error(key, line, "expected a list") }
        var result: [ConfigReader] = []
        for (index, item) in sequence.enumerated() {
            result.append(try ConfigReader(node: item, path: "\(Self.join(path, key))[\(index)]"))
        }
        return result
    }

    mutating func strings(_ key: String) throws(ConfigError) -> [String]? {
        guard let (node, line) = node(key) else { return nil }
        guard case .sequence(let sequence) = node else { throw error(key, line, "expected a list") }
        var result: [String] = []
        for item in sequence {
            guard case .scalar(let scalar) = item else {
                throw error(key, item.mark?.line ?? line, "expected a list of text values")
            }
            result.append(scalar.string)
        }
        return result
    }

    /// An error about this section's value for `key`, for checks across several keys.
    func invalid(_ key: String, _ message: String) -> ConfigError {
        let line = pairs.first(where: { $0.key == key }).flatMap { $0.value.mark?.line ?? $0.line }
        return error(key, line, message)
    }

    /// The line of `key`'s value in this section, when the key is there.
    func line(of key: String) -> Int? {
        pairs.first(where: { $0.key == key }).flatMap { $0.value.mark?.line ?? $0.line }
    }

    /// Rejects keys that were never read: they are typos or settings this version lacks.
    func finish() throws(ConfigError) {
        for pair in pairs where !seen.contains(pair.key) {
            throw ConfigError(key: Self.join(path, pair.key), line: pair.line, message: "unknown key")
        }
    }
}
