/// A SIP method token (RFC 3261 §7.1). A struct rather than an enum so that extension methods
/// (INFO, UPDATE, …) can be carried and answered with 405 instead of failing the parse.
public struct SIPMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let invite = SIPMethod("INVITE")
    public static let ack = SIPMethod("ACK")
    public static let bye = SIPMethod("BYE")
    public static let cancel = SIPMethod("CANCEL")
    public static let options = SIPMethod("OPTIONS")
    public static let register = SIPMethod("REGISTER")
    /// RFC 3428 instant message (the tablet's callback requests to the centrale).
    public static let message = SIPMethod("MESSAGE")
}

/// One header field as it appeared on the wire, its name in canonical (long) form.
public struct SIPHeaderField: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = SIPHeaders.canonicalName(name)
        self.value = value
    }
}

/// The ordered header fields of a message. Names compare case-insensitively and compact forms
/// (`v`, `f`, `t`, `i`, …) are expanded on the way in, so callers only ever ask for long names.
public struct SIPHeaders: Sendable, Equatable, RandomAccessCollection {
    public private(set) var fields: [SIPHeaderField]

    public init(_ fields: [SIPHeaderField] = []) { self.fields = fields }

    public var startIndex: Int { fields.startIndex }
    public var endIndex: Int { fields.endIndex }
    public subscript(position: Int) -> SIPHeaderField { fields[position] }

    /// The first value of `name`, if any.
    public subscript(name: String) -> String? {
        let key = SIPHeaders.canonicalName(name).lowercased()
        return fields.first { $0.name.lowercased() == key }?.value
    }

    /// Every value of `name`, with comma-separated list headers (Via, Contact, Route, …) split
    /// into their elements, in order.
    public func values(_ name: String) -> [String] {
        let canonical = SIPHeaders.canonicalName(name)
        let key = canonical.lowercased()
        let raw = fields.filter { $0.name.lowercased() == key }.map(\.value)
        guard SIPHeaders.listHeaders.contains(key) else { return raw }
        return raw.flatMap { splitTopLevelCommas($0) }
    }

    public func contains(_ name: String) -> Bool { self[name] != nil }

    public mutating func add(_ name: String, _ value: String) {
        fields.append(SIPHeaderField(name: name, value: value))
    }

    /// Replaces every occurrence of `name` with one field at the position of the first (or at
    /// the end when absent).
    public mutating func set(_ name: String, _ value: String) {
        let key = SIPHeaders.canonicalName(name).lowercased()
        if let first = fields.firstIndex(where: { $0.name.lowercased() == key }) {
            fields[first].value = value
            var index = fields.count - 1
            while index > first {
                if fields[index].name.lowercased() == key { fields.remove(at: index) }
                index -= 1
            }
        } else {
            add(name, value)
        }
    }

    public mutating func remove(_ name: String) {
        let key = SIPHeaders.canonicalName(name).lowercased()
        fields.removeAll { $0.name.lowercased() == key }
    }

    /// Inserts a field before every other field (used for a new top Via).
    public mutating func prepend(_ name: String, _ value: String) {
        fields.insert(SIPHeaderField(name: name, value: value), at: 0)
    }

    static let listHeaders: Set<String> = [
        "via", "contact", "route", "record-route", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "allow-events", "path", "service-route", "content-encoding",
    ]

    private static let compactForms: [String: String] = [
        "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
        "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
        "v": "Via", "o": "Event", "r": "Refer-To", "u": "Allow-Events", "a": "Accept-Contact",
        "b": "Referred-By", "j": "Reject-Contact", "d": "Request-Disposition",
        "x": "Session-Expires", "y": "Identity",
    ]

    private static let knownNames: [String: String] = {
        let names = [
            "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
            "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
            "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
            "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
            "Max-Forwards", "Min-Expires", "MIME-Version", "Organization", "P-Asserted-Identity",
            "Path", "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require",
            "Record-Route", "Reply-To", "Require", "Retry-After", "Route", "Server",
            "Service-Route", "Session-Expires", "Subject", "Supported", "Timestamp", "To",
            "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate", "Refer-To",
            "Referred-By", "Identity", "Accept-Contact", "Reject-Contact", "Request-Disposition",
        ]
        return Dictionary(uniqueKeysWithValues: names.map { ($0.lowercased(), $0) })
    }()

    /// The canonical spelling of a header name: compact forms expanded, well-known names in
    /// their RFC spelling, anything else as given.
    public static func canonicalName(_ name: String) -> String {
        let lower = name.lowercased()
        if lower.count == 1, let long = compactForms[lower] { return long }
        return knownNames[lower] ?? name
    }
}

/// Splits a header value on commas that are not inside quotes or angle brackets.
func splitTopLevelCommas(_ value: String) -> [String] {
    var parts: [String] = []
    var current = ""
    var inQuotes = false
    var inAngle = false
    var escaped = false
    for ch in value {
        if escaped {
            current.append(ch)
            escaped = false
            continue
        }
        switch ch {
        case "\\" where inQuotes:
            escaped = true
            current.append(ch)
        case "\"":
            inQuotes.toggle()
            current.append(ch)
        case "<" where !inQuotes:
            inAngle = true
            current.append(ch)
        case ">" where !inQuotes:
            inAngle = false
            current.append(ch)
        case "," where !inQuotes && !inAngle:
            parts.append(trimSIPWhitespace(current))
            current = ""
        default:
            current.append(ch)
        }
    }
    let last = trimSIPWhitespace(current)
    if !last.isEmpty || parts.isEmpty { parts.append(last) }
    return parts.filter { !$0.isEmpty }
}

func trimSIPWhitespace(_ s: some StringProtocol) -> String {
    var scalars = Substring(s).unicodeScalars[...]
    while let first = scalars.first, first == " " || first == "\t" { scalars = scalars.dropFirst() }
    while let last = scalars.last, last == " " || last == "\t" { scalars = scalars.dropLast() }
    return String(String.UnicodeScalarView(scalars))
}

/// A SIP request.
public struct SIPRequest: Sendable, Equatable {
    public var method: SIPMethod
    public var uri: String
    public var headers: SIPHeaders
    public var body: [UInt8]

    public init(method: SIPMethod, uri: String, headers: SIPHeaders = SIPHeaders(), body: [UInt8] = []) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
    }
}

/// A SIP response.
public struct SIPResponse: Sendable, Equatable {
    public var status: Int
    public var reason: String
    public var headers: SIPHeaders
    public var body: [UInt8]

    public init(status: Int, reason: String? = nil, headers: SIPHeaders = SIPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.reason = reason ?? SIPResponse.defaultReason(status)
        self.headers = headers
        self.body = body
    }

    public static func defaultReason(_ status: Int) -> String {
        switch status {
        case 100: "Trying"
        case 180: "Ringing"
        case 183: "Session Progress"
        case 200: "OK"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 407: "Proxy Authentication Required"
        case 408: "Request Timeout"
        case 480: "Temporarily Unavailable"
        case 481: "Call/Transaction Does Not Exist"
        case 486: "Busy Here"
        case 487: "Request Terminated"
        case 488: "Not Acceptable Here"
        case 500: "Server Internal Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 603: "Decline"
        default: "Unknown"
        }
    }
}

/// A parsed SIP message.
public enum SIPMessage: Sendable, Equatable {
    case request(SIPRequest)
    case response(SIPResponse)

    public var headers: SIPHeaders {
        switch self {
        case .request(let r): r.headers
        case .response(let r): r.headers
        }
    }

    public var body: [UInt8] {
        switch self {
        case .request(let r): r.body
        case .response(let r): r.body
        }
    }
}

// MARK: - Serialisation

extension SIPRequest {
    /// Wire form; Content-Length is set to the body's size (in place if present).
    public func serialized() -> [UInt8] {
        var out = Array("\(method.rawValue) \(uri) SIP/2.0\r\n".utf8)
        appendHeadersAndBody(headers, body, to: &out)
        return out
    }
}

extension SIPResponse {
    /// Wire form; Content-Length is set to the body's size (in place if present).
    public func serialized() -> [UInt8] {
        var out = Array("SIP/2.0 \(status) \(reason)\r\n".utf8)
        appendHeadersAndBody(headers, body, to: &out)
        return out
    }
}

extension SIPMessage {
    public func serialized() -> [UInt8] {
        switch self {
        case .request(let r): r.serialized()
        case .response(let r): r.serialized()
        }
    }
}

private func appendHeadersAndBody(_ headers: SIPHeaders, _ body: [UInt8], to out: inout [UInt8]) {
    var headers = headers
    headers.set("Content-Length", String(body.count))
    for field in headers {
        out.append(contentsOf: field.name.utf8)
        out.append(contentsOf: ": ".utf8)
        out.append(contentsOf: field.value.utf8)
        out.append(contentsOf: [13, 10])
    }
    out.append(contentsOf: [13, 10])
    out.append(contentsOf: body)
}
