internal import CCrypto

/// HTTP digest authentication as SIP uses it (RFC 3261 §22.4, RFC 2617 with qop=auth,
/// RFC 8760 for SHA-256). Pure functions and values: the user agent parses a challenge,
/// picks the strongest algorithm offered and builds the Authorization / Proxy-Authorization
/// value. The password is only ever an argument here; nothing in this file logs.
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case md5 = "MD5"
    case sha256 = "SHA-256"

    /// Higher is preferred when a server offers several challenges (RFC 8760 §2.4: SHA-256 first).
    var strength: Int {
        switch self {
        case .md5: 1
        case .sha256: 2
        }
    }

    func hexDigest(_ text: String) throws(DigestUnavailable) -> String {
        let bytes = Array(text.utf8)
        let digest: [UInt8]?
        switch self {
        case .md5: digest = MD5.hash(bytes)
        case .sha256: digest = SHA256.hash(bytes)
        }
        guard let digest else { throw DigestUnavailable(algorithm: self) }
        return hex(digest)
    }

    /// Whether libcrypto computes this digest here. MD5 is missing from a FIPS-only OpenSSL
    /// provider set-up; neither is there when only the base provider is configured. Asked once.
    public var isAvailable: Bool {
        switch self {
        case .md5: Self.md5Available
        case .sha256: Self.sha256Available
        }
    }

    private static let md5Available = MD5.hash([]) != nil
    private static let sha256Available = SHA256.hash([]) != nil
}

/// libcrypto cannot compute a digest algorithm a server asked for: the challenge is refused
/// (a registration failure or a failed INVITE with this reason), never a crash.
public struct DigestUnavailable: Error, Equatable, Sendable, CustomStringConvertible {
    public var algorithm: DigestAlgorithm
    public var description: String {
        "libcrypto cannot compute \(algorithm.rawValue) (OpenSSL configured without it, e.g. FIPS-only providers)"
    }
}

/// One `WWW-Authenticate` / `Proxy-Authenticate` challenge with scheme Digest.
public struct DigestChallenge: Sendable, Equatable {
    public var realm: String
    public var nonce: String
    public var opaque: String?
    public var algorithm: DigestAlgorithm
    /// True when the server offered `qop=auth` (we then use it; `auth-int` alone is not supported).
    public var qopAuth: Bool
    public var stale: Bool

    /// Parses one challenge header value; nil when it is not Digest, lacks realm or nonce, or
    /// names an algorithm we do not implement (such a challenge is skipped, not an error).
    public init?(_ header: String) {
        var text = Substring(header).drop { $0 == " " || $0 == "\t" }
        guard text.count > 6, text.prefix(6).lowercased() == "digest" else { return nil }
        text = text.dropFirst(6)
        var fields: [String: String] = [:]
        while true {
            text = text.drop { $0 == " " || $0 == "\t" || $0 == "," || $0 == "\r" || $0 == "\n" }
            guard !text.isEmpty else { break }
            guard let equals = text.firstIndex(of: "=") else { return nil }
            let name = text[..<equals].trimmingSpaces().lowercased()
            text = text[text.index(after: equals)...].drop { $0 == " " || $0 == "\t" }
            var value = ""
            if text.first == "\"" {
                text = text.dropFirst()
                var escaped = false
                var closed = false
                while let c = text.first {
                    text = text.dropFirst()
                    if escaped {
                        value.append(c)
                        escaped = false
                    } else if c == "\\" {
                        escaped = true
                    } else if c == "\"" {
                        closed = true
                        break
                    } else {
                        value.append(c)
                    }
                }
                guard closed else { return nil }
            } else {
                let end = text.firstIndex(of: ",") ?? text.endIndex
                value = String(text[..<end]).trimmingSpaces()
                text = text[end...]
            }
            fields[name] = value
        }
        guard let realm = fields["realm"], let nonce = fields["nonce"], !nonce.isEmpty else { return nil }
        let algorithmName = (fields["algorithm"] ?? "MD5").uppercased()
        guard let algorithm = DigestAlgorithm(rawValue: algorithmName) else { return nil }
        self.realm = realm
        self.nonce = nonce
        self.opaque = fields["opaque"]
        self.algorithm = algorithm
        let qops = (fields["qop"] ?? "").split(separator: ",").map { $0.trimmingSpaces().lowercased() }
        self.qopAuth = qops.contains("auth")
        if fields["qop"] != nil, !qopAuth { return nil }  // only auth-int offered
        self.stale = fields["stale"]?.lowercased() == "true"
    }

    /// The strongest usable challenge among several header values (SHA-256 over MD5); one whose
    /// algorithm libcrypto cannot compute here is not usable (see `unavailable(in:)`).
    public static func best(of headers: [String]) -> DigestChallenge? {
        headers.compactMap(DigestChallenge.init).filter(\.algorithm.isAvailable)
            .max { $0.algorithm.strength < $1.algorithm.strength }
    }

    /// The first algorithm offered in `headers` that libcrypto cannot compute, for the log line
    /// and failure reason when `best(of:)` finds nothing.
    public static func unavailable(in headers: [String]) -> DigestUnavailable? {
        headers.compactMap(DigestChallenge.init).first { !$0.algorithm.isAvailable }
            .map { DigestUnavailable(algorithm: $0.algorithm) }
    }

    /// The credentials header value for `method` and `uri` (RFC 2617 §3.2.2; RFC 8760 for SHA-256).
    /// `cnonce` and `nonceCount` are passed in so tests can check known answers.
    public func authorization(
        method: String, uri: String, username: String, password: String, cnonce: String, nonceCount: UInt32
    ) throws(DigestUnavailable) -> String {
        let ha1 = try algorithm.hexDigest("\(username):\(realm):\(password)")
        let ha2 = try algorithm.hexDigest("\(method):\(uri)")
        let nc = String(nonceCount, radix: 16)
        let paddedNC = String(repeating: "0", count: max(0, 8 - nc.count)) + nc
        let response: String
        if qopAuth {
            response = try algorithm.hexDigest("\(ha1):\(nonce):\(paddedNC):\(cnonce):auth:\(ha2)")
        } else {
            response = try algorithm.hexDigest("\(ha1):\(nonce):\(ha2)")
        }
        var parts = [
            "Digest username=\"\(quoted(username))\"", "realm=\"\(quoted(realm))\"", "nonce=\"\(quoted(nonce))\"",
            "uri=\"\(quoted(uri))\"", "response=\"\(response)\"", "algorithm=\(algorithm.rawValue)",
        ]
        if qopAuth { parts += ["cnonce=\"\(cnonce)\"", "qop=auth", "nc=\(paddedNC)"] }
        if let opaque { parts.append("opaque=\"\(quoted(opaque))\"") }
        return parts.joined(separator: ", ")
    }
}

private func quoted(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
}

extension StringProtocol {
    fileprivate func trimmingSpaces() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }

    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            out += rest[..<range.lowerBound]
            out += replacement
            rest = rest[range.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    fileprivate func range(of target: String) -> Range<Index>? {
        guard !target.isEmpty else { return nil }
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(target) {
                return index..<self.index(index, offsetBy: target.count)
            }
            index = self.index(after: index)
        }
        return nil
    }
}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}

// MARK: - Hash functions
// OpenSSL's libcrypto (EVP) through the CCrypto system-library target; this is the only file
// that imports it. libcrypto rather than swift-crypto: the system library is already on the
// device (libssl3), maintained by Debian's security team, and swift-crypto would build a second
// BoringSSL next to NIOSSL's on every CI run. NIOSSL's BoringSSL has prefixed symbols, so the
// two do not clash.

/// One-shot digest of `message` with the named EVP digest; nil when libcrypto cannot provide it
/// (an OpenSSL configured FIPS-only has no MD5): the caller refuses the challenge.
private func evpDigest(_ name: String, _ message: [UInt8]) -> [UInt8]? {
    var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
    let size = message.withUnsafeBufferPointer { input in
        out.withUnsafeMutableBufferPointer { output in
            beeldzorg_digest(name, input.baseAddress, input.count, output.baseAddress)
        }
    }
    guard size > 0 else { return nil }
    return Array(out.prefix(Int(size)))
}

enum MD5 {
    static func hash(_ message: [UInt8]) -> [UInt8]? { evpDigest("MD5", message) }
}

enum SHA256 {
    static func hash(_ message: [UInt8]) -> [UInt8]? { evpDigest("SHA256", message) }
}
