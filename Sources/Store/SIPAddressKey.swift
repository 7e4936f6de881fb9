/// The part of a SIP address that identifies a person for contact matching: `user@host`.
///
/// Accepts a bare URI (`sip:jan@example.org`), a name-addr (`"Jan" <sips:jan@Example.org:5061;transport=tls>`),
/// or `user@host` without a scheme. Scheme (sip/sips), port, URI parameters, headers and
/// the display name are dropped; the host is lower-cased (RFC 3261 19.1.4: hosts compare
/// case-insensitively) while the user part keeps its case (it compares case-sensitively)
/// after %-unescaping. Matching by user@host rather than full RFC 3261 URI equality is a
/// deliberate choice: a family member's app may add `;transport=tcp` or a port, and must
/// still be recognised.
public enum SIPAddressKey {
    /// Returns the matching key, or `nil` when `address` holds no usable host.
    public static func normalise(_ address: String) -> String? {
        var s = Substring(address.trimmingSpaces())
        // name-addr: take what is inside the angle brackets.
        if let open = s.firstIndex(of: "<") {
            guard let close = s[open...].firstIndex(of: ">") else { return nil }
            s = s[s.index(after: open)..<close]
        }
        s = Substring(String(s).trimmingSpaces())
        let lower = s.lowercased()
        if lower.hasPrefix("sips:") {
            s = s.dropFirst(5)
        } else if lower.hasPrefix("sip:") {
            s = s.dropFirst(4)
        } else if lower.contains(":"), !s.contains("@") {
            // Another scheme (tel:, http:) without user@host: not a SIP address we match.
            if let colon = s.firstIndex(of: ":"), !s[s.index(after: colon)...].allSatisfy(\.isNumber) {
                return nil
            }
        }
        // Headers (?…) end the URI; parameters (;…) end the hostport. The user part may
        // legally hold ';' (user parameters), so parameters are cut only after the '@'.
        if let q = s.firstIndex(of: "?") { s = s[..<q] }
        var user: Substring? = nil
        var hostport: Substring
        if let at = s.lastIndex(of: "@") {
            var u = s[..<at]
            if let colon = u.firstIndex(of: ":") { u = u[..<colon] }  // drop user:password
            user = u
            hostport = s[s.index(after: at)...]
        } else {
            hostport = s
        }
        if let semi = hostport.firstIndex(of: ";") { hostport = hostport[..<semi] }
        var host: Substring
        if hostport.hasPrefix("[") {
            // IPv6 reference: keep the brackets, drop a port after them.
            guard let close = hostport.firstIndex(of: "]") else { return nil }
            host = hostport[...close]
        } else if let colon = hostport.firstIndex(of: ":") {
            host = hostport[..<colon]
        } else {
            host = hostport
        }
        if host.hasSuffix(".") { host = host.dropLast() }  // FQDN written with the root dot
        guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "<" || $0 == ">" }) else {
            return nil
        }
        let hostKey = host.lowercased()
        guard let user, !user.isEmpty else { return hostKey }
        return percentDecoded(user) + "@" + hostKey
    }

    private static func percentDecoded(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%"), it.count >= 2,
                let hi = hexValue(it[it.startIndex]), let lo = hexValue(it[it.startIndex + 1])
            {
                bytes.append(hi << 4 | lo)
                it = it.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
