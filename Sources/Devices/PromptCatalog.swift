// The spoken prompts: the translators' text file (prompts/nl.txt), the sentences filled in
// from it, and where their audio comes from (WAVs rendered at build time, or espeak-ng at
// run time for sentences with a name or a number in them).

import Synchronization

/// A prompt text file could not be used; names the file and line.
public struct PromptCatalogError: Error, Sendable, Equatable, CustomStringConvertible {
    public var source: String
    /// 1-based; 0 when the problem is the file as a whole (unreadable, a prompt missing).
    public var line: Int
    public var message: String

    public var description: String {
        line > 0 ? "\(source):\(line): \(message)" : "\(source): \(message)"
    }
}

/// Prompt texts by key, loaded from a `key = text` file. Texts may hold placeholders in
/// braces (`{naam}`, `{seconden}`) that are filled in when the prompt is spoken.
public struct PromptCatalog: Sendable, Equatable {
    /// The keys the daemon speaks; a catalog without any of them is rejected at load time,
    /// not discovered missing when a client presses the button.
    public enum Key {
        public static let callingCentrale = "calling_centrale"
        public static let stillTrying = "still_trying"
        public static let connected = "connected"
        /// Placeholder `{naam}`.
        public static let incomingCall = "incoming_call"
        /// Placeholder `{seconden}`.
        public static let autoAnswer = "auto_answer"
        public static let callEnded = "call_ended"
        public static let centraleUnreachable = "centrale_unreachable"
        public static let noNetwork = "no_network"
        public static let buttonStuck = "button_stuck"
        public static let connectionLost = "connection_lost"
        /// A callback request the centrale has not acknowledged yet.
        public static let callbackTrying = "callback_trying"
        /// The centrale acknowledged the callback request.
        public static let callbackPromised = "callback_promised"

        public static let required: [String] = [
            callingCentrale, stillTrying, connected, incomingCall, autoAnswer, callEnded,
            centraleUnreachable, noNetwork, buttonStuck, connectionLost, callbackTrying, callbackPromised,
        ]
    }

    private var texts: [String: String]
    /// Keys in file order.
    public private(set) var keys: [String]

    /// The keys that are spoken: all but the `screen_*` lines, which are words on the screen
    /// (Sources/Screen/ScreenTexts.swift) and never rendered to audio.
    public var spokenKeys: [String] { keys.filter { !$0.hasPrefix("screen_") } }

    /// Parses a catalog. `required` keys must all be present.
    public init(parsing contents: String, source: String, required: [String] = Key.required) throws(PromptCatalogError) {
        var texts: [String: String] = [:]
        var keys: [String] = []
        var lineNumbers: [String: Int] = [:]
        for (index, rawLine) in contents.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let number = index + 1
            func fail(_ message: String) -> PromptCatalogError {
                PromptCatalogError(source: source, line: number, message: message)
            }
            let line = rawLine.trimmed
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw fail("expected 'key = text', found \"\(line)\"")
            }
            let key = String(line[..<equals].trimmed)
            let text = String(line[line.index(after: equals)...].trimmed)
            guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }) else {
                throw fail("key \"\(key)\" must be lower-case letters, digits and _")
            }
            guard !text.isEmpty else { throw fail("\(key) has no text") }
            if let first = lineNumbers[key] {
                throw fail("\(key) is defined twice (first on line \(first))")
            }
            do throws(PlaceholderError) {
                _ = try Self.placeholders(in: text)
            } catch {
                throw fail("\(key): \(error.message)")
            }
            texts[key] = text
            keys.append(key)
            lineNumbers[key] = number
        }
        let missing = required.filter { texts[$0] == nil }
        if !missing.isEmpty {
            throw PromptCatalogError(source: source, line: 0, message: "missing prompts: \(missing.joined(separator: ", "))")
        }
        self.texts = texts
        self.keys = keys
    }

    /// Loads a catalog file (UTF-8).
    public init(contentsOf path: String, required: [String] = Key.required) throws(PromptCatalogError) {
        let bytes: [UInt8]
        do {
            bytes = try readWholeFile(path)
        } catch {
            throw PromptCatalogError(source: path, line: 0, message: "cannot read: \(error.detail)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw PromptCatalogError(source: path, line: 0, message: "not valid UTF-8")
        }
        try self.init(parsing: text, source: path, required: required)
    }

    /// The text as written, with its placeholders.
    public func template(_ key: String) -> String? { texts[key] }

    /// Placeholder names in a prompt, in order of appearance.
    public func placeholders(of key: String) -> [String] {
        texts[key].flatMap { try? Self.placeholders(in: $0) } ?? []
    }

    /// The sentence to speak, placeholders filled in. A missing value or unknown key is an
    /// error rather than a sentence with "{naam}" read out loud.
    public func text(_ key: String, values: [String: String] = [:]) throws(PromptCatalogError) -> String {
        guard let template = texts[key] else {
            throw PromptCatalogError(source: "prompts", line: 0, message: "no prompt \"\(key)\"")
        }
        var out = ""
        var rest = template[...]
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            let close = rest[open...].firstIndex(of: "}")!  // validated at load time
            let name = String(rest[rest.index(after: open)..<close])
            guard let value = values[name] else {
                throw PromptCatalogError(source: "prompts", line: 0, message: "\(key) needs a value for {\(name)}")
            }
            out += value
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    struct PlaceholderError: Error { var message: String }

    static func placeholders(in text: String) throws(PlaceholderError) -> [String] {
        var names: [String] = []
        var current: String?
        for ch in text {
            switch (ch, current) {
            case ("{", nil): current = ""
            case ("{", .some): throw PlaceholderError(message: "\"{\" inside a placeholder")
            case ("}", nil): throw PlaceholderError(message: "\"}\" without \"{\"")
            case ("}", .some(let name)):
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0 == "_" }) else {
                    throw PlaceholderError(message: "placeholder {\(name)} must be a single word")
                }
                names.append(name)
                current = nil
            case (_, .some(let name)): current = name + String(ch)
            case (_, nil): break
            }
        }
        if current != nil { throw PlaceholderError(message: "\"{\" is never closed") }
        return names
    }
}

extension Substring {
    fileprivate var trimmed: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\u{FEFF}" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
        let last = lastIndex(where: { !isSpace($0) })!
        return self[first...last]
    }
}

/// Audio for prompts: the WAV rendered at build time (`DIR/KEY.wav`) when the prompt has
/// no placeholders and the file is there; otherwise the filled-in sentence rendered now by
/// the speech renderer and kept in memory, so a contact's "{naam} belt u" is rendered once.
///
/// Prompts without placeholders, once read or rendered (`warmUp()` at start), stay in memory
/// for good: a tablet out of file descriptors (issue 15, 3) can still say "De centrale is
/// niet bereikbaar" without opening a WAV or starting espeak-ng.
public final class PromptLibrary: Sendable {
    public let catalog: PromptCatalog
    private let wavDirectory: String?
    private let renderer: SpeechRenderer
    private struct Cache {
        /// Placeholder-free prompts by key: ten or so clips, never evicted.
        var fixed: [String: AudioClip] = [:]
        /// Filled-in sentences (a contact's name): bounded.
        var filled: [String: AudioClip] = [:]
    }
    private let cache = Mutex(Cache())

    public init(catalog: PromptCatalog, wavDirectory: String?, renderer: SpeechRenderer = SpeechRenderer()) {
        self.catalog = catalog
        self.wavDirectory = wavDirectory
        self.renderer = renderer
    }

    /// The installed layout `prompts/render.sh` produces: texts in `DIR/LANG.txt`, rendered
    /// audio in `DIR/wav/LANG/KEY.wav`.
    public convenience init(promptsDirectory: String, language: String = "nl",
                            renderer: SpeechRenderer = SpeechRenderer()) throws(PromptCatalogError) {
        let catalog = try PromptCatalog(contentsOf: "\(promptsDirectory)/\(language).txt")
        self.init(catalog: catalog, wavDirectory: "\(promptsDirectory)/wav/\(language)", renderer: renderer)
    }

    /// The audio for a prompt at 48 kHz mono.
    public func clip(_ key: String, values: [String: String] = [:]) throws -> AudioClip {
        let sentence = try catalog.text(key, values: values)
        let isFixed = catalog.placeholders(of: key).isEmpty
        if let cached = cache.withLock({ isFixed ? $0.fixed[key] : $0.filled[sentence] }) { return cached }
        var clip: AudioClip?
        if let wavDirectory, isFixed {
            let path = wavDirectory + "/" + key + ".wav"
            if let bytes = try? readWholeFile(path) {
                clip = try WAVFile.decode(bytes, source: path)
            }
        }
        let result = try clip ?? renderer.render(sentence)
        cache.withLock { cache in
            if isFixed {
                cache.fixed[key] = result
            } else {
                if cache.filled.count > 32 { cache.filled.removeAll() }  // a few MB at most
                cache.filled[sentence] = result
            }
        }
        return result
    }

    /// Loads (or renders) every placeholder-free prompt into memory, so the first press is
    /// not the moment a missing build step is discovered, and the prompts need no file
    /// descriptor and no process afterwards. Throws the first failure, after trying all.
    public func warmUp() throws {
        var firstError: (any Error)?
        for key in catalog.spokenKeys where catalog.placeholders(of: key).isEmpty {
            do {
                _ = try clip(key)
            } catch {
                firstError = firstError ?? error
            }
        }
        if let firstError { throw firstError }
    }

    /// Placeholder-free prompts held in memory.
    public var fixedPromptsInMemory: Int { cache.withLock { $0.fixed.count } }
}
