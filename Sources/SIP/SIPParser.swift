/// Why a SIP message could not be parsed. Every malformed input ends in one of these; the
/// parser never traps and never allocates more than its limits allow.
public enum SIPParseError: Error, Equatable, Sendable {
    case empty
    case messageTooLarge
    case headerSectionTooLarge
    case tooManyHeaders
    case lineTooLong
    /// No blank line ending the header section: a truncated datagram or stream.
    case incompleteHeaders
    /// Bytes in the start line or headers that are not UTF-8, or control characters.
    case invalidEncoding
    case invalidStartLine
    case unsupportedVersion
    case invalidStatusCode
    case invalidMethod
    case invalidRequestURI
    case malformedHeader
    case missingHeader(String)
    case invalidHeaderValue(String)
    /// Content-Length is mandatory on stream transports.
    case missingContentLength
    case invalidContentLength
    /// Content-Length promises more bytes than arrived.
    case truncatedBody
    case bodyTooLarge
    /// The CSeq method differs from the request method.
    case methodMismatch
}

/// The transport a message arrived on; it decides what a missing Content-Length means.
public enum SIPTransportKind: Sendable, Equatable {
    /// UDP: a missing Content-Length means "the rest of the datagram".
    case datagram
    /// TCP/TLS: Content-Length is required.
    case stream
}

/// Upper bounds that keep a hostile peer from costing us memory or time. A message may be as
/// large as a UDP datagram (65,535 bytes), body included: a valid OPTIONS or INVITE of that
/// size is answered, however unusual (issue 15).
public struct SIPParserLimits: Sendable, Equatable {
    public var maxMessageSize: Int
    public var maxHeaderSectionSize: Int
    public var maxHeaderCount: Int
    public var maxLineLength: Int
    public var maxBodySize: Int

    public init(
        maxMessageSize: Int = 65_535, maxHeaderSectionSize: Int = 16_384, maxHeaderCount: Int = 128,
        maxLineLength: Int = 4_096, maxBodySize: Int = 65_535
    ) {
        self.maxMessageSize = maxMessageSize
        self.maxHeaderSectionSize = maxHeaderSectionSize
        self.maxHeaderCount = maxHeaderCount
        self.maxLineLength = maxLineLength
        self.maxBodySize = maxBodySize
    }

    public static let `default` = SIPParserLimits()
}

/// RFC 3261 message parser. Stateless; one call per datagram or per framed stream message.
public struct SIPMessageParser: Sendable {
    public var limits: SIPParserLimits

    public init(limits: SIPParserLimits = .default) { self.limits = limits }

    /// Parses one complete message and checks the headers every message must carry.
    public func parse(_ bytes: [UInt8], transport: SIPTransportKind) throws(SIPParseError) -> SIPMessage {
        let head = try parseHead(bytes)
        let headers = head.headers

        // Content-Length: every copy must agree and be a plain decimal number.
        let lengths = headers.fields.filter { $0.name == "Content-Length" }.map(\.value)
        var declared: Int?
        for text in lengths {
            guard let n = parseDecimal(text, maxDigits: 9) else { throw .invalidContentLength }
            if let d = declared, d != n { throw .invalidContentLength }
            declared = n
        }
        let available = bytes.count - head.bodyStart
        let bodyCount: Int
        if let declared {
            if declared > limits.maxBodySize { throw .bodyTooLarge }
            if declared > available { throw .truncatedBody }
            bodyCount = declared  // RFC 3261 §18.3: extra datagram bytes are discarded
        } else {
            if transport == .stream { throw .missingContentLength }
            bodyCount = available
        }
        if bodyCount > limits.maxBodySize { throw .bodyTooLarge }
        let body = Array(bytes[head.bodyStart..<(head.bodyStart + bodyCount)])

        for name in ["Via", "From", "To", "Call-ID", "CSeq"] where headers[name] == nil {
            throw .missingHeader(name)
        }
        guard let cseq = SIPCSeq(headers["CSeq"]!) else { throw .invalidHeaderValue("CSeq") }
        guard headers.values("Via").allSatisfy({ SIPVia($0) != nil }) else { throw .invalidHeaderValue("Via") }
        guard SIPNameAddress(headers["From"]!) != nil else { throw .invalidHeaderValue("From") }
        guard SIPNameAddress(headers["To"]!) != nil else { throw .invalidHeaderValue("To") }
        if headers["Call-ID"]!.isEmpty || headers["Call-ID"]!.contains(" ") { throw .invalidHeaderValue("Call-ID") }
        if let mf = headers["Max-Forwards"], parseDecimal(mf, maxDigits: 3).map({ $0 <= 255 }) != true {
            throw .invalidHeaderValue("Max-Forwards")
        }

        switch head.startLine {
        case .request(let method, let uri):
            if cseq.method != method { throw .methodMismatch }
            return .request(SIPRequest(method: method, uri: uri, headers: headers, body: body))
        case .response(let status, let reason):
            return .response(SIPResponse(status: status, reason: reason, headers: headers, body: body))
        }
    }

    /// A lenient parse of a request's start line and headers only, for answering a malformed
    /// request with 400: returns nil when not even that much can be read, or when the headers
    /// a response needs (Via, From, To, Call-ID, CSeq) are absent.
    /// With `anyVersion`, a request line with another `SIP/x.y` version is read too, so the
    /// request can be answered with 505 (responses still must be SIP/2.0).
    public func salvageRequest(_ bytes: [UInt8], anyVersion: Bool = false) -> SIPRequest? {
        guard let head = try? parseHead(bytes, anyRequestVersion: anyVersion),
              case .request(let method, let uri) = head.startLine
        else {
            return nil
        }
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] where head.headers[name] == nil { return nil }
        guard SIPVia(head.headers.values("Via").first ?? "") != nil else { return nil }
        return SIPRequest(method: method, uri: uri, headers: head.headers)
    }

    // MARK: Head

    enum StartLine {
        case request(SIPMethod, String)
        case response(Int, String)
    }

    struct Head {
        var startLine: StartLine
        var headers: SIPHeaders
        var bodyStart: Int
    }

    func parseHead(_ bytes: [UInt8], anyRequestVersion: Bool = false) throws(SIPParseError) -> Head {
        if bytes.isEmpty { throw .empty }
        if bytes.count > limits.maxMessageSize { throw .messageTooLarge }

        // RFC 3261 §7.5: CRLFs before the start line are ignored.
        var index = 0
        while index < bytes.count, bytes[index] == 13 || bytes[index] == 10 { index += 1 }
        if index == bytes.count { throw .empty }
        let headStart = index

        var lines: [String] = []
        var bodyStart: Int?
        while index < bytes.count {
            if index - headStart > limits.maxHeaderSectionSize { throw .headerSectionTooLarge }
            // Find the end of this line (LF, with an optional CR before it).
            var end = index
            while end < bytes.count, bytes[end] != 10 {
                end += 1
                if end - index > limits.maxLineLength { throw .lineTooLong }
            }
            if end == bytes.count { break }  // no line terminator: truncated
            var lineEnd = end
            if lineEnd > index, bytes[lineEnd - 1] == 13 { lineEnd -= 1 }
            if lineEnd == index {
                bodyStart = end + 1
                break
            }
            let slice = bytes[index..<lineEnd]
            for byte in slice where (byte < 0x20 && byte != 0x09) || byte == 0x7F { throw .invalidEncoding }
            guard let line = String(validating: slice, as: UTF8.self) else { throw .invalidEncoding }
            if lines.count > limits.maxHeaderCount { throw .tooManyHeaders }
            lines.append(line)
            index = end + 1
        }
        if index - headStart > limits.maxHeaderSectionSize { throw .headerSectionTooLarge }
        guard let bodyStart, let first = lines.first else { throw .incompleteHeaders }

        let startLine = try parseStartLine(first, anyRequestVersion: anyRequestVersion)
        var fields: [SIPHeaderField] = []
        for line in lines.dropFirst() {
            if line.first == " " || line.first == "\t" {
                // Folded line (RFC 3261 §7.3.1): continues the previous field's value.
                guard !fields.isEmpty else { throw .malformedHeader }
                let more = trimSIPWhitespace(line)
                if !more.isEmpty {
                    let previous = fields[fields.count - 1].value
                    fields[fields.count - 1].value = previous.isEmpty ? more : previous + " " + more
                }
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { throw .malformedHeader }
            let name = trimSIPWhitespace(line[..<colon])
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else { throw .malformedHeader }
            fields.append(SIPHeaderField(name: name, value: trimSIPWhitespace(line[line.index(after: colon)...])))
            if fields.count > limits.maxHeaderCount { throw .tooManyHeaders }
        }
        return Head(startLine: startLine, headers: SIPHeaders(fields), bodyStart: bodyStart)
    }

    private func parseStartLine(_ line: String, anyRequestVersion: Bool) throws(SIPParseError) -> StartLine {
        let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 || (parts.count == 2 && parts[0].uppercased() == "SIP/2.0") else {
            throw .invalidStartLine
        }
        if parts[0].hasPrefix("SIP/") || parts[0].hasPrefix("sip/") {
            guard parts[0].uppercased() == "SIP/2.0" else { throw .unsupportedVersion }
            guard parts[1].utf8.count == 3, let status = Int(parts[1]), (100...699).contains(status) else {
                throw .invalidStatusCode
            }
            return .response(status, parts.count == 3 ? String(parts[2]) : "")
        }
        guard parts.count == 3 else { throw .invalidStartLine }
        let method = parts[0]
        guard !method.isEmpty, method.utf8.allSatisfy(isTokenByte) else { throw .invalidMethod }
        let uri = parts[1]
        guard isPlausibleURI(uri) else { throw .invalidRequestURI }
        guard parts[2] == "SIP/2.0" || parts[2].uppercased() == "SIP/2.0" else {
            if parts[2].uppercased().hasPrefix("SIP/") {
                guard anyRequestVersion else { throw .unsupportedVersion }
                return .request(SIPMethod(String(method)), String(uri))
            }
            throw .invalidStartLine
        }
        return .request(SIPMethod(String(method)), String(uri))
    }

    private func isPlausibleURI(_ uri: Substring) -> Bool {
        guard let colon = uri.firstIndex(of: ":"), colon > uri.startIndex else { return false }
        let scheme = uri[..<colon]
        guard scheme.utf8.allSatisfy({ isAlpha($0) || isDigit($0) || $0 == 43 || $0 == 45 || $0 == 46 }),
              let first = scheme.utf8.first, isAlpha(first)
        else { return false }
        let rest = uri[uri.index(after: colon)...]
        return !rest.isEmpty && !rest.contains(" ") && !rest.contains("\t")
    }
}

// MARK: - Small lexical helpers

@inline(__always) func isAlpha(_ b: UInt8) -> Bool { (b >= 65 && b <= 90) || (b >= 97 && b <= 122) }
@inline(__always) func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }

/// RFC 3261 `token` characters.
func isTokenByte(_ b: UInt8) -> Bool {
    if isAlpha(b) || isDigit(b) { return true }
    switch b {
    case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "!"), UInt8(ascii: "%"), UInt8(ascii: "*"),
        UInt8(ascii: "_"), UInt8(ascii: "+"), UInt8(ascii: "`"), UInt8(ascii: "'"), UInt8(ascii: "~"):
        return true
    default:
        return false
    }
}

/// A non-negative decimal of at most `maxDigits` digits and nothing else.
func parseDecimal(_ text: some StringProtocol, maxDigits: Int) -> Int? {
    let utf8 = text.utf8
    guard !utf8.isEmpty, utf8.count <= maxDigits, utf8.allSatisfy(isDigit) else { return nil }
    return Int(String(text))
}
