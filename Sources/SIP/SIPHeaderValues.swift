/// `CSeq: 314159 INVITE`.
public struct SIPCSeq: Sendable, Equatable, CustomStringConvertible {
    public var number: UInt32
    public var method: SIPMethod

    public init(number: UInt32, method: SIPMethod) {
        self.number = number
        self.method = method
    }

    public init?(_ text: String) {
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard parts.count == 2, let n = parseDecimal(parts[0], maxDigits: 10), n <= Int(Int32.max),
              parts[1].utf8.allSatisfy(isTokenByte)
        else { return nil }
        number = UInt32(n)
        method = SIPMethod(String(parts[1]))
    }

    public var description: String { "\(number) \(method.rawValue)" }
}

/// Parameters of a header value or URI (`;tag=abc;lr`), in order, names compared
/// case-insensitively.
public struct SIPParameters: Sendable, Equatable {
    public var items: [(name: String, value: String?)] {
        get { storage.map { ($0.name, $0.value) } }
        set { storage = newValue.map { Item(name: $0.name, value: $0.value) } }
    }

    private struct Item: Sendable, Equatable {
        var name: String
        var value: String?
    }

    private var storage: [Item] = []

    public init() {}

    /// Parses `;a=b;c` (leading semicolon optional).
    init?(parsing text: Substring) {
        for piece in text.split(separator: ";", omittingEmptySubsequences: true) {
            let trimmed = trimSIPWhitespace(piece)
            if trimmed.isEmpty { continue }
            if let eq = trimmed.firstIndex(of: "=") {
                let name = trimSIPWhitespace(trimmed[..<eq])
                let value = trimSIPWhitespace(trimmed[trimmed.index(after: eq)...])
                guard !name.isEmpty else { return nil }
                storage.append(Item(name: name, value: value))
            } else {
                storage.append(Item(name: trimmed, value: nil))
            }
        }
    }

    public subscript(name: String) -> String? {
        storage.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public func contains(_ name: String) -> Bool {
        storage.contains { $0.name.lowercased() == name.lowercased() }
    }

    public mutating func set(_ name: String, _ value: String?) {
        if let i = storage.firstIndex(where: { $0.name.lowercased() == name.lowercased() }) {
            storage[i].value = value
        } else {
            storage.append(Item(name: name, value: value))
        }
    }

    public mutating func remove(_ name: String) {
        storage.removeAll { $0.name.lowercased() == name.lowercased() }
    }

    var wireForm: String {
        storage.map { ";" + $0.name + ($0.value.map { "=" + $0 } ?? "") }.joined()
    }
}

/// One Via element: `SIP/2.0/UDP host:port;branch=z9hG4bK…;rport`.
public struct SIPVia: Sendable, Equatable, CustomStringConvertible {
    public var transport: String
    public var host: String
    public var port: Int?
    public var parameters: SIPParameters

    public init(transport: String, host: String, port: Int?, parameters: SIPParameters = SIPParameters()) {
        self.transport = transport
        self.host = host
        self.port = port
        self.parameters = parameters
    }

    public init?(_ text: String) {
        let semicolon = text.firstIndex(of: ";") ?? text.endIndex
        let sentPart = text[..<semicolon]
        let protocolAndHost = sentPart.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard protocolAndHost.count == 2 else { return nil }
        let proto = protocolAndHost[0].split(separator: "/")
        guard proto.count == 3, proto[0].uppercased() == "SIP", proto[1] == "2.0", !proto[2].isEmpty else {
            return nil
        }
        guard let hostPort = HostPort(protocolAndHost[1]) else { return nil }
        guard let params = SIPParameters(parsing: text[semicolon...]) else { return nil }
        transport = proto[2].uppercased()
        host = hostPort.host
        port = hostPort.port
        parameters = params
    }

    public var branch: String? { parameters["branch"] }

    public var description: String {
        "SIP/2.0/\(transport) \(HostPort(host: host, port: port).description)\(parameters.wireForm)"
    }
}

/// `host[:port]`, with IPv6 references in brackets.
struct HostPort: CustomStringConvertible {
    var host: String
    var port: Int?

    init(host: String, port: Int?) {
        self.host = host
        self.port = port
    }

    init?(_ text: some StringProtocol) {
        let text = Substring(text)
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                port = nil
            } else {
                guard rest.hasPrefix(":"), let p = parseDecimal(rest.dropFirst(), maxDigits: 5), p <= 65535 else {
                    return nil
                }
                port = p
            }
        } else {
            let pieces = text.split(separator: ":", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else { return nil }
            host = String(pieces[0])
            if pieces.count == 2 {
                guard let p = parseDecimal(pieces[1], maxDigits: 5), p <= 65535 else { return nil }
                port = p
            } else {
                port = nil
            }
        }
        guard !host.isEmpty,
              host.utf8.allSatisfy({ isAlpha($0) || isDigit($0) || $0 == 46 || $0 == 45 || $0 == 58 || $0 == 95 })
        else { return nil }
    }

    var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port.map { "\(h):\($0)" } ?? h
    }
}

/// A SIP or SIPS URI: `sip:user@host:port;params?headers` (RFC 3261 §19.1).
public struct SIPURI: Sendable, Equatable, CustomStringConvertible {
    public var scheme: String
    public var user: String?
    public var host: String
    public var port: Int?
    public var parameters: SIPParameters
    /// The `?headers` part, kept verbatim.
    public var headersPart: String?

    public init(scheme: String = "sip", user: String?, host: String, port: Int?, parameters: SIPParameters = SIPParameters()) {
        self.scheme = scheme
        self.user = user
        self.host = host
        self.port = port
        self.parameters = parameters
        self.headersPart = nil
    }

    public init?(_ text: String) {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let scheme = text[..<colon].lowercased()
        guard scheme == "sip" || scheme == "sips" else { return nil }
        var rest = text[text.index(after: colon)...]
        if let q = rest.firstIndex(of: "?") {
            headersPart = String(rest[rest.index(after: q)...])
            rest = rest[..<q]
        } else {
            headersPart = nil
        }
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            // Passwords in URIs are deprecated; keep only the user part.
            user = String(userinfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)[0])
            rest = rest[rest.index(after: at)...]
        } else {
            user = nil
        }
        let semicolon = rest.firstIndex(of: ";") ?? rest.endIndex
        guard let hostPort = HostPort(rest[..<semicolon]), let params = SIPParameters(parsing: rest[semicolon...]) else {
            return nil
        }
        self.scheme = scheme
        host = hostPort.host
        port = hostPort.port
        parameters = params
    }

    public var description: String {
        var s = scheme + ":"
        if let user { s += user + "@" }
        s += HostPort(host: host, port: port).description
        s += parameters.wireForm
        if let headersPart { s += "?" + headersPart }
        return s
    }
}

/// A From/To/Contact value: `"Display" <sip:uri>;tag=x` or `sip:uri;tag=x`.
public struct SIPNameAddress: Sendable, Equatable, CustomStringConvertible {
    public var displayName: String?
    public var uri: String
    public var parameters: SIPParameters

    public init(displayName: String? = nil, uri: String, parameters: SIPParameters = SIPParameters()) {
        self.displayName = displayName
        self.uri = uri
        self.parameters = parameters
    }

    public init?(_ text: String) {
        let text = trimSIPWhitespace(text)
        if text == "*" {
            displayName = nil
            uri = "*"
            parameters = SIPParameters()
            return
        }
        if let open = text.firstIndex(of: "<") {
            var display = trimSIPWhitespace(text[..<open])
            if display.hasPrefix("\"") {
                guard display.count >= 2, display.hasSuffix("\"") else { return nil }
                display = String(display.dropFirst().dropLast())
                    .replacingBackslashEscapes()
            }
            guard let close = text[open...].firstIndex(of: ">") else { return nil }
            let inner = String(text[text.index(after: open)..<close])
            guard inner.contains(":"), !inner.contains(" ") else { return nil }
            guard let params = SIPParameters(parsing: text[text.index(after: close)...]) else { return nil }
            displayName = display.isEmpty ? nil : display
            uri = inner
            parameters = params
        } else {
            // addr-spec form: parameters after the URI belong to the header, not the URI.
            let semicolon = text.firstIndex(of: ";") ?? text.endIndex
            let inner = String(text[..<semicolon])
            guard inner.contains(":"), !inner.contains(" "), !inner.contains("\"") else { return nil }
            guard let params = SIPParameters(parsing: text[semicolon...]) else { return nil }
            displayName = nil
            uri = inner
            parameters = params
        }
    }

    public var tag: String? { parameters["tag"] }

    public var description: String {
        var s = ""
        if let displayName {
            let escaped = displayName.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"")
            s = "\"\(escaped)\" "
        }
        return s + "<\(uri)>" + parameters.wireForm
    }
}

extension String {
    fileprivate func replacingBackslashEscapes() -> String {
        var out = ""
        var escaped = false
        for ch in self {
            if escaped {
                out.append(ch)
                escaped = false
            } else if ch == "\\" {
                escaped = true
            } else {
                out.append(ch)
            }
        }
        return out
    }
}
