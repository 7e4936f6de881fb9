public import Devices

/// The words on the screen, from the translators' prompt file (`prompts/nl.txt`): the
/// screen shows the same sentences the tablet speaks, plus a few `screen_*` lines that are
/// only shown. Loading fails as a whole when a key is missing, like the prompts.
public struct ScreenTexts: Sendable, Equatable {
    public enum Key {
        public static let idle = "screen_idle"
        public static let ringing = "screen_ringing"
        public static let unreachableNext = "screen_unreachable_next"
        public static let callbackPending = "screen_callback_pending"
        /// A contact's call nobody took: `{naam}`, `{tijd}`; `…Earlier` also `{dag}`.
        public static let missedToday = "screen_missed_today"
        public static let missedEarlier = "screen_missed_earlier"
        /// Placeholder `{naam}`.
        public static let inCall = "screen_in_call"
        public static let weekdays = "screen_weekdays"
        public static let months = "screen_months"
        /// The daemon cannot start (a configuration fault): what is wrong, what to do.
        public static let needsService = "screen_needs_service"
        public static let needsServiceNext = "screen_needs_service_next"

        public static let required: [String] = [
            idle, ringing, unreachableNext, callbackPending, missedToday, missedEarlier, inCall, weekdays, months,
            needsService, needsServiceNext,
        ]
    }

    public let catalog: PromptCatalog
    /// Sunday first, as `Calendar` numbers them.
    public let weekdays: [String]
    public let months: [String]

    public init(catalog: PromptCatalog) throws(ScreenTextsError) {
        let missing = Key.required.filter { catalog.template($0) == nil }
        guard missing.isEmpty else {
            throw ScreenTextsError(message: "missing screen texts: \(missing.joined(separator: ", "))")
        }
        self.catalog = catalog
        weekdays = catalog.template(Key.weekdays)!.split(separator: " ").map(String.init)
        months = catalog.template(Key.months)!.split(separator: " ").map(String.init)
        guard weekdays.count == 7 else {
            throw ScreenTextsError(message: "\(Key.weekdays) needs 7 names, has \(weekdays.count)")
        }
        guard months.count == 12 else {
            throw ScreenTextsError(message: "\(Key.months) needs 12 names, has \(months.count)")
        }
    }

    /// Loads `DIR/LANG.txt`, the file the prompts come from.
    public init(promptsDirectory: String, language: String = "nl") throws {
        try self.init(catalog: PromptCatalog(contentsOf: "\(promptsDirectory)/\(language).txt",
                                             required: PromptCatalog.Key.required + Key.required))
    }

    /// A sentence, or the key itself in brackets when it cannot be filled in: the screen
    /// never goes blank over a text.
    public func text(_ key: String, _ values: [String: String] = [:]) -> String {
        (try? catalog.text(key, values: values)) ?? "[\(key)]"
    }
}

/// The prompt file lacks a screen text (or has the wrong number of day or month names).
public struct ScreenTextsError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { "screen texts: \(message)" }
}
