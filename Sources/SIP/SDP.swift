/// Why an SDP body could not be parsed (RFC 4566). Hostile input ends here, never in a trap.
public enum SDPParseError: Error, Equatable, Sendable {
    case tooLarge
    case tooManyLines
    case tooManyMediaSections
    case invalidEncoding
    case malformedLine(Int)
    case missingLine(Character)
    case unsupportedVersion
    case invalidOrigin
    case invalidConnection
    case invalidMedia
    case invalidNumber
}

/// `c=IN IP4 192.0.2.1`.
public struct SDPConnection: Sendable, Equatable {
    public var addressType: String
    public var address: String

    public init(addressType: String = "IP4", address: String) {
        self.addressType = addressType
        self.address = address
    }

    init(parsing text: String) throws(SDPParseError) {
        let parts = text.split(separator: " ")
        guard parts.count == 3, parts[0] == "IN", parts[1] == "IP4" || parts[1] == "IP6", !parts[2].isEmpty else {
            throw .invalidConnection
        }
        addressType = String(parts[1])
        // A multicast TTL suffix (`/127`) is dropped: we only do unicast.
        address = String(parts[2].split(separator: "/")[0])
    }

    var wireForm: String { "IN \(addressType) \(address)" }
}

/// `a=name:value` or the flag `a=name`.
public struct SDPAttribute: Sendable, Equatable {
    public var name: String
    public var value: String?

    public init(_ name: String, _ value: String? = nil) {
        self.name = name
        self.value = value
    }

    var wireForm: String { value.map { "\(name):\($0)" } ?? name }
}

/// One `m=` section with its own lines.
public struct SDPMedia: Sendable, Equatable {
    public var kind: String  // audio, video, …
    public var port: Int
    public var portCount: Int?
    public var proto: String  // RTP/AVP, RTP/SAVP, …
    public var formats: [String]
    public var connection: SDPConnection?
    public var bandwidths: [String]
    public var attributes: [SDPAttribute]

    public init(
        kind: String, port: Int, portCount: Int? = nil, proto: String, formats: [String],
        connection: SDPConnection? = nil, bandwidths: [String] = [], attributes: [SDPAttribute] = []
    ) {
        self.kind = kind
        self.port = port
        self.portCount = portCount
        self.proto = proto
        self.formats = formats
        self.connection = connection
        self.bandwidths = bandwidths
        self.attributes = attributes
    }

    public func attributeValues(_ name: String) -> [String] {
        attributes.filter { $0.name == name }.compactMap(\.value)
    }

    public func hasAttribute(_ name: String) -> Bool { attributes.contains { $0.name == name } }
}

/// An SDP session description (RFC 4566): the lines this product needs, modelled; other
/// session-level lines are checked for form and dropped.
public struct SessionDescription: Sendable, Equatable {
    public var originUsername: String
    public var sessionID: String
    public var sessionVersion: String
    public var originAddressType: String
    public var originAddress: String
    public var sessionName: String
    public var connection: SDPConnection?
    public var bandwidths: [String]
    public var timing: String
    public var attributes: [SDPAttribute]
    public var media: [SDPMedia]

    public init(
        originUsername: String = "-", sessionID: String, sessionVersion: String,
        originAddressType: String = "IP4", originAddress: String, sessionName: String = "-",
        connection: SDPConnection?, bandwidths: [String] = [], timing: String = "0 0",
        attributes: [SDPAttribute] = [], media: [SDPMedia]
    ) {
        self.originUsername = originUsername
        self.sessionID = sessionID
        self.sessionVersion = sessionVersion
        self.originAddressType = originAddressType
        self.originAddress = originAddress
        self.sessionName = sessionName
        self.connection = connection
        self.bandwidths = bandwidths
        self.timing = timing
        self.attributes = attributes
        self.media = media
    }

    public static let maxSize = 32_768
    public static let maxLines = 1_024
    public static let maxMediaSections = 16

    /// Parses an SDP body. Accepts CRLF or LF line ends.
    public init(parsing bytes: [UInt8]) throws(SDPParseError) {
        guard bytes.count <= SessionDescription.maxSize else { throw .tooLarge }
        for byte in bytes where (byte < 0x20 && byte != 9 && byte != 10 && byte != 13) || byte == 0x7F {
            throw .invalidEncoding
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .invalidEncoding }
        let lines = text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
        guard lines.count <= SessionDescription.maxLines else { throw .tooManyLines }

        var version: String?
        var origin: [Substring]?
        var name: String?
        var connection: SDPConnection?
        var bandwidths: [String] = []
        var timing: String?
        var attributes: [SDPAttribute] = []
        var media: [SDPMedia] = []

        for (number, rawLine) in lines.enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine[...]
            guard line.count >= 2, line[line.index(after: line.startIndex)] == "=",
                  let type = line.first, type.isASCII, type.isLetter
            else { throw .malformedLine(number + 1) }
            let value = String(line.dropFirst(2))
            if number == 0, type != "v" { throw .missingLine("v") }
            switch type {
            case "v":
                guard version == nil else { throw .malformedLine(number + 1) }
                guard value == "0" else { throw .unsupportedVersion }
                version = value
            case "o":
                let parts = value.split(separator: " ")
                guard parts.count == 6, parts[3] == "IN" else { throw .invalidOrigin }
                origin = parts
            case "s":
                name = value
            case "t":
                let parts = value.split(separator: " ")
                guard parts.count == 2, parts.allSatisfy({ parseDecimal($0, maxDigits: 20) != nil }) else {
                    throw .invalidNumber
                }
                if timing == nil { timing = value }
            case "c":
                let c = try SDPConnection(parsing: value)
                if media.isEmpty { connection = c } else { media[media.count - 1].connection = c }
            case "b":
                if media.isEmpty { bandwidths.append(value) } else { media[media.count - 1].bandwidths.append(value) }
            case "a":
                let attribute: SDPAttribute
                if let colon = value.firstIndex(of: ":") {
                    attribute = SDPAttribute(String(value[..<colon]), String(value[value.index(after: colon)...]))
                } else {
                    attribute = SDPAttribute(value)
                }
                guard !attribute.name.isEmpty else { throw .malformedLine(number + 1) }
                if media.isEmpty { attributes.append(attribute) } else { media[media.count - 1].attributes.append(attribute) }
            case "m":
                guard media.count < SessionDescription.maxMediaSections else { throw .tooManyMediaSections }
                let parts = value.split(separator: " ")
                guard parts.count >= 4 else { throw .invalidMedia }
                let portParts = parts[1].split(separator: "/", omittingEmptySubsequences: false)
                guard portParts.count <= 2, let port = parseDecimal(portParts[0], maxDigits: 5), port <= 65535 else {
                    throw .invalidNumber
                }
                var count: Int?
                if portParts.count == 2 {
                    guard let n = parseDecimal(portParts[1], maxDigits: 3), n >= 1 else { throw .invalidNumber }
                    count = n
                }
                media.append(SDPMedia(kind: String(parts[0]), port: port, portCount: count, proto: String(parts[2]),
                                      formats: parts[3...].map(String.init)))
            default:
                // i=, u=, e=, p=, z=, k=, r=: allowed, not needed.
                continue
            }
        }
        guard version != nil else { throw .missingLine("v") }
        guard let origin else { throw .missingLine("o") }
        guard let name else { throw .missingLine("s") }
        guard let timing else { throw .missingLine("t") }
        originUsername = String(origin[0])
        sessionID = String(origin[1])
        sessionVersion = String(origin[2])
        originAddressType = String(origin[4])
        originAddress = String(origin[5])
        sessionName = name
        self.connection = connection
        self.bandwidths = bandwidths
        self.timing = timing
        self.attributes = attributes
        self.media = media
    }

    /// The wire form with CRLF line ends.
    public func serialized() -> [UInt8] {
        var lines = [
            "v=0",
            "o=\(originUsername) \(sessionID) \(sessionVersion) IN \(originAddressType) \(originAddress)",
            "s=\(sessionName.isEmpty ? "-" : sessionName)",
        ]
        if let connection { lines.append("c=\(connection.wireForm)") }
        lines += bandwidths.map { "b=\($0)" }
        lines.append("t=\(timing)")
        lines += attributes.map { "a=\($0.wireForm)" }
        for m in media {
            let port = m.portCount.map { "\(m.port)/\($0)" } ?? "\(m.port)"
            lines.append("m=\(m.kind) \(port) \(m.proto) \(m.formats.joined(separator: " "))")
            if let c = m.connection { lines.append("c=\(c.wireForm)") }
            lines += m.bandwidths.map { "b=\($0)" }
            lines += m.attributes.map { "a=\($0.wireForm)" }
        }
        return Array((lines.joined(separator: "\r\n") + "\r\n").utf8)
    }
}
