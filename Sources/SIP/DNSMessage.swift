/// The records RFC 3263 needs from a DNS answer (RFC 1035 §4.1, SRV RFC 2782, AAAA RFC 3596),
/// parsed without I/O. Names may be compressed anywhere (RFC 1035 §4.1.4); a malformed
/// message yields no records rather than a crash.
enum DNSRecordType: UInt16, Sendable {
    case a = 1
    case cname = 5
    case srv = 33
    case aaaa = 28
}

/// One SRV record (RFC 2782).
struct SRVRecord: Equatable, Sendable {
    var priority: Int
    var weight: Int
    var port: Int
    /// The target host, without the trailing dot; "." (no service) is left out by the parser.
    var target: String
    var ttl: Int
}

/// One A or AAAA record: the address as text (`10.0.0.1`, `2001:db8::1`).
struct AddressRecord: Equatable, Sendable {
    var address: String
    var ttl: Int
}

enum DNSMessage {
    /// The SRV records in the answer section.
    static func srvRecords(_ message: [UInt8]) -> [SRVRecord] {
        answers(message).compactMap { answer in
            guard answer.type == DNSRecordType.srv.rawValue, answer.length >= 7 else { return nil }
            let r = answer.offset
            let priority = Int(message[r]) << 8 | Int(message[r + 1])
            let weight = Int(message[r + 2]) << 8 | Int(message[r + 3])
            let port = Int(message[r + 4]) << 8 | Int(message[r + 5])
            guard let (target, _) = name(message, at: r + 6), !target.isEmpty, port > 0 else { return nil }
            return SRVRecord(priority: priority, weight: weight, port: port, target: target, ttl: answer.ttl)
        }
    }

    /// The A (4-byte) or AAAA (16-byte) records in the answer section; CNAMEs before them are
    /// followed by the server already (their TTLs count too: the smallest wins).
    static func addressRecords(_ message: [UInt8], type: DNSRecordType) -> [AddressRecord] {
        let all = answers(message)
        let chainTTL = all.filter { $0.type == DNSRecordType.cname.rawValue }.map(\.ttl).min()
        return all.compactMap { answer in
            let bytes = Array(message[answer.offset..<answer.offset + answer.length])
            let ttl = min(answer.ttl, chainTTL ?? Int.max)
            switch (DNSRecordType(rawValue: answer.type), bytes.count) {
            case (.a?, 4) where type == .a:
                return AddressRecord(address: bytes.map(String.init).joined(separator: "."), ttl: ttl)
            case (.aaaa?, 16) where type == .aaaa:
                let groups = stride(from: 0, to: 16, by: 2).map { String(Int(bytes[$0]) << 8 | Int(bytes[$0 + 1]), radix: 16) }
                return AddressRecord(address: groups.joined(separator: ":"), ttl: ttl)
            default:
                return nil
            }
        }
    }

    struct Answer {
        var type: UInt16
        var ttl: Int
        var offset: Int
        var length: Int
    }

    /// The answer section's records (type, TTL, where the RDATA is); empty when malformed.
    static func answers(_ m: [UInt8]) -> [Answer] {
        guard m.count >= 12 else { return [] }
        let questions = Int(m[4]) << 8 | Int(m[5])
        let answerCount = Int(m[6]) << 8 | Int(m[7])
        var offset = 12
        for _ in 0..<questions {
            guard let (_, next) = name(m, at: offset), next + 4 <= m.count else { return [] }
            offset = next + 4
        }
        var result: [Answer] = []
        for _ in 0..<answerCount {
            guard let (_, next) = name(m, at: offset), next + 10 <= m.count else { return result }
            let type = UInt16(m[next]) << 8 | UInt16(m[next + 1])
            let ttl32 = UInt32(m[next + 4]) << 24 | UInt32(m[next + 5]) << 16 | UInt32(m[next + 6]) << 8 | UInt32(m[next + 7])
            let length = Int(m[next + 8]) << 8 | Int(m[next + 9])
            let data = next + 10
            guard data + length <= m.count else { return result }
            // RFC 2181 §8: a TTL with the top bit set counts as zero.
            result.append(Answer(type: type, ttl: ttl32 & 0x8000_0000 != 0 ? 0 : Int(ttl32), offset: data, length: length))
            offset = data + length
        }
        return result
    }

    /// The (possibly compressed) name at `offset` without the trailing dot, and the offset just
    /// after it in place. nil when it runs off the message or loops.
    static func name(_ m: [UInt8], at offset: Int) -> (String, Int)? {
        var labels: [String] = []
        var position = offset
        var end: Int?
        var jumps = 0
        while true {
            guard position < m.count else { return nil }
            let length = Int(m[position])
            if length == 0 {
                return (labels.joined(separator: "."), end ?? position + 1)
            }
            if length & 0xC0 == 0xC0 {
                guard position + 1 < m.count, jumps < 64 else { return nil }
                jumps += 1
                if end == nil { end = position + 2 }
                position = (length & 0x3F) << 8 | Int(m[position + 1])
                continue
            }
            guard length < 64, position + 1 + length <= m.count else { return nil }
            labels.append(String(decoding: m[(position + 1)...(position + length)], as: UTF8.self))
            position += 1 + length
        }
    }
}
