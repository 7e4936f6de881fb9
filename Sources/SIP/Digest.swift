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

    func hexDigest(_ text: String) -> String {
        let bytes = Array(text.utf8)
        let digest: [UInt8]
        switch self {
        case .md5: digest = MD5.hash(bytes)
        case .sha256: digest = SHA256.hash(bytes)
        }
        return hex(digest)
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

    /// The strongest usable challenge among several header values (SHA-256 over MD5).
    public static func best(of headers: [String]) -> DigestChallenge? {
        headers.compactMap(DigestChallenge.init).max { $0.algorithm.strength < $1.algorithm.strength }
    }

    /// The credentials header value for `method` and `uri` (RFC 2617 §3.2.2; RFC 8760 for SHA-256).
    /// `cnonce` and `nonceCount` are passed in so tests can check known answers.
    public func authorization(
        method: String, uri: String, username: String, password: String, cnonce: String, nonceCount: UInt32
    ) -> String {
        let ha1 = algorithm.hexDigest("\(username):\(realm):\(password)")
        let ha2 = algorithm.hexDigest("\(method):\(uri)")
        let nc = String(nonceCount, radix: 16)
        let paddedNC = String(repeating: "0", count: max(0, 8 - nc.count)) + nc
        let response: String
        if qopAuth {
            response = algorithm.hexDigest("\(ha1):\(nonce):\(paddedNC):\(cnonce):auth:\(ha2)")
        } else {
            response = algorithm.hexDigest("\(ha1):\(nonce):\(ha2)")
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
// Small, dependency-free implementations (RFC 1321, FIPS 180-4): digest auth needs only these
// two, on short strings, so pulling in swift-crypto for them is not worth a dependency.

enum MD5 {
    private static let s: [UInt32] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
        4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ]
    /// floor(|sin(i + 1)| · 2³²), RFC 1321 §3.4.
    private static let k: [UInt32] = [
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
        0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
        0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
        0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
        0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
        0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
        0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
    ]

    static func hash(_ message: [UInt8]) -> [UInt8] {
        var a0: UInt32 = 0x6745_2301, b0: UInt32 = 0xEFCD_AB89, c0: UInt32 = 0x98BA_DCFE, d0: UInt32 = 0x1032_5476
        var data = message
        let bitLength = UInt64(message.count) &* 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for i in 0..<8 { data.append(UInt8(truncatingIfNeeded: bitLength >> (8 * UInt64(i)))) }
        for chunk in stride(from: 0, to: data.count, by: 64) {
            var m = [UInt32](repeating: 0, count: 16)
            for i in 0..<16 {
                let o = chunk + i * 4
                m[i] = UInt32(data[o]) | UInt32(data[o + 1]) << 8 | UInt32(data[o + 2]) << 16 | UInt32(data[o + 3]) << 24
            }
            var a = a0, b = b0, c = c0, d = d0
            for i in 0..<64 {
                var f: UInt32
                let g: Int
                switch i {
                case 0..<16: f = (b & c) | (~b & d); g = i
                case 16..<32: f = (d & b) | (~d & c); g = (5 * i + 1) % 16
                case 32..<48: f = b ^ c ^ d; g = (3 * i + 5) % 16
                default: f = c ^ (b | ~d); g = (7 * i) % 16
                }
                f = f &+ a &+ k[i] &+ m[g]
                a = d
                d = c
                c = b
                b = b &+ ((f << s[i]) | (f >> (32 - s[i])))
            }
            a0 = a0 &+ a; b0 = b0 &+ b; c0 = c0 &+ c; d0 = d0 &+ d
        }
        var out: [UInt8] = []
        for word in [a0, b0, c0, d0] {
            for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: word >> (8 * UInt32(i)))) }
        }
        return out
    }
}

enum SHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hash(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [
            0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
        ]
        var data = message
        let bitLength = UInt64(message.count) &* 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for i in (0..<8).reversed() { data.append(UInt8(truncatingIfNeeded: bitLength >> (8 * UInt64(i)))) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                let o = chunk + i * 4
                w[i] = UInt32(data[o]) << 24 | UInt32(data[o + 1]) << 16 | UInt32(data[o + 2]) << 8 | UInt32(data[o + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
            for i in 0..<64 {
                let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ maj
                hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
            }
            h[0] = h[0] &+ a; h[1] = h[1] &+ b; h[2] = h[2] &+ c; h[3] = h[3] &+ d
            h[4] = h[4] &+ e; h[5] = h[5] &+ f; h[6] = h[6] &+ g; h[7] = h[7] &+ hh
        }
        var out: [UInt8] = []
        for word in h {
            for i in (0..<4).reversed() { out.append(UInt8(truncatingIfNeeded: word >> (8 * UInt32(i)))) }
        }
        return out
    }
}
