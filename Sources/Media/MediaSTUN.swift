// STUN on the media ports (RFC 7983 demultiplexing): a peer such as linphone sends STUN
// Binding requests to our RTP and RTCP ports (NAT discovery, keepalives, consent). They are
// neither RTP nor SRTP: answered when we can, otherwise ignored, and never counted as an
// SRTP authentication failure or a malformed packet.

/// The little of STUN (RFC 5389) a media port needs: tell STUN from RTP/RTCP by the first
/// byte, and answer a Binding request with the address we saw it from.
enum MediaSTUN {
    static let magicCookie: [UInt8] = [0x21, 0x12, 0xA4, 0x42]

    /// RFC 7983 §7: a first byte of 0–3 is STUN (128–191 is RTP/RTCP, 20–63 DTLS).
    static func isSTUN(_ bytes: [UInt8]) -> Bool {
        guard let first = bytes.first else { return false }
        return first <= 3
    }

    /// The Binding success response (with XOR-MAPPED-ADDRESS) to a Binding request from
    /// `source`; nil for anything we do not answer: not a well-formed Binding request, or one
    /// with MESSAGE-INTEGRITY (an ICE connectivity check with credentials we never offered:
    /// answering it without integrity would be wrong, RFC 5389 §10.1.2, so it is ignored).
    static func bindingResponse(to request: [UInt8], from source: SocketAddress) -> [UInt8]? {
        guard request.count >= 20, request[0] == 0x00, request[1] == 0x01,
              Array(request[4..<8]) == magicCookie
        else { return nil }
        let length = Int(request[2]) << 8 | Int(request[3])
        guard length % 4 == 0, 20 + length == request.count else { return nil }
        var offset = 20
        while offset + 4 <= request.count {
            let type = Int(request[offset]) << 8 | Int(request[offset + 1])
            let size = Int(request[offset + 2]) << 8 | Int(request[offset + 3])
            guard offset + 4 + size <= request.count else { return nil }
            if type == 0x0008 { return nil }  // MESSAGE-INTEGRITY
            offset += 4 + (size + 3) & ~3
        }
        let transaction = Array(request[8..<20])
        let port = UInt16(source.port) ^ 0x2112
        var value: [UInt8] = [0x00, 0x00, UInt8(port >> 8), UInt8(port & 0xFF)]
        switch source.storage {
        case .v4(let address):
            value[1] = 0x01
            let octets = withUnsafeBytes(of: address) { Array($0) }  // network byte order
            value += zip(octets, magicCookie).map { $0 ^ $1 }
        case .v6(let octets):
            value[1] = 0x02
            value += zip(octets, magicCookie + transaction).map { $0 ^ $1 }
        }
        let attribute: [UInt8] = [0x00, 0x20, 0x00, UInt8(value.count)] + value
        return [0x01, 0x01, 0x00, UInt8(attribute.count)] + magicCookie + transaction + attribute
    }
}
