// The one file that imports libsrtp2. AES_CM_128_HMAC_SHA1_80 only (RFC 4568 default).
private import CSRTP
import Synchronization

/// libsrtp must be initialised once per process before any session exists. A global `let`
/// is initialised exactly once, thread-safely, on first use.
private let srtpLibraryStatus: UInt32 = srtp_init().rawValue

/// One SRTP/SRTCP session for one direction, keyed from a 30-byte master key || salt (the
/// inline key of an SDP `a=crypto` line, base64-decoded). Outbound sessions protect,
/// inbound sessions unprotect; calls are serialised, so RTP and RTCP threads may share it.
public final class SRTPSession: @unchecked Sendable {
    public enum Direction: Sendable { case outbound, inbound }

    public static let masterKeyLength = 30
    /// Bytes the 80-bit authentication tag adds to each SRTP packet (SRTCP adds 4 more for
    /// the index).
    public static let rtpOverhead = 10
    public static let rtcpOverhead = 14

    public let direction: Direction
    // srtp_t is not thread-safe; this lock owns it. Unchecked Sendable is sound because
    // every use of `session` is inside `lock`.
    private let lock = Mutex<Void>(())
    private let session: srtp_t

    public init(masterKeyAndSalt key: [UInt8], direction: Direction) throws {
        guard key.count == Self.masterKeyLength else {
            throw MediaError.srtp("master key and salt must be \(Self.masterKeyLength) bytes, got \(key.count)")
        }
        guard srtpLibraryStatus == srtp_err_status_ok.rawValue else {
            throw MediaError.srtp("srtp_init failed with status \(srtpLibraryStatus)")
        }
        var created: srtp_t? = nil
        let status = key.withUnsafeBufferPointer { buffer in
            beeldzorg_srtp_create_aes_cm_128_hmac_sha1_80(&created, buffer.baseAddress, direction == .inbound ? 1 : 0, 1_024)
        }
        guard status == srtp_err_status_ok, let created else {
            throw MediaError.srtp("srtp_create failed with status \(status.rawValue)")
        }
        self.direction = direction
        self.session = created
    }

    deinit { srtp_dealloc(session) }

    public func protect(_ rtp: [UInt8]) throws -> [UInt8] {
        precondition(direction == .outbound, "protect on an inbound SRTP session")
        return try run(rtp, room: Self.rtpOverhead, "srtp_protect", srtp_protect)
    }

    public func unprotect(_ srtp: [UInt8]) throws -> [UInt8] {
        precondition(direction == .inbound, "unprotect on an outbound SRTP session")
        return try run(srtp, room: 0, "srtp_unprotect", srtp_unprotect)
    }

    public func protectRTCP(_ rtcp: [UInt8]) throws -> [UInt8] {
        precondition(direction == .outbound, "protectRTCP on an inbound SRTP session")
        return try run(rtcp, room: Self.rtcpOverhead, "srtp_protect_rtcp", srtp_protect_rtcp)
    }

    public func unprotectRTCP(_ srtcp: [UInt8]) throws -> [UInt8] {
        precondition(direction == .inbound, "unprotectRTCP on an outbound SRTP session")
        return try run(srtcp, room: 0, "srtp_unprotect_rtcp", srtp_unprotect_rtcp)
    }

    private func run(
        _ packet: [UInt8], room: Int, _ what: String,
        _ call: (srtp_t?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> srtp_err_status_t
    ) throws -> [UInt8] {
        guard packet.count >= 8 else { throw MediaError.srtp("\(what): packet of \(packet.count) bytes is too short") }
        // libsrtp writes the tag after the packet: leave room for it.
        var buffer = packet + [UInt8](repeating: 0, count: room)
        var length = Int32(packet.count)
        let status = lock.withLock { _ in
            buffer.withUnsafeMutableBytes { raw in call(session, raw.baseAddress, &length) }
        }
        guard status == srtp_err_status_ok else {
            throw status == srtp_err_status_auth_fail || status == srtp_err_status_replay_fail || status == srtp_err_status_replay_old
                ? MediaError.srtp("\(what): authentication failed (status \(status.rawValue))")
                : MediaError.srtp("\(what): status \(status.rawValue)")
        }
        buffer.removeSubrange(Int(length)...)
        return buffer
    }
}

extension MediaError {
    /// True for SRTP packets rejected by authentication or replay checks (counted, dropped).
    public var isAuthenticationFailure: Bool {
        if case .srtp(let detail) = self { return detail.contains("authentication failed") }
        return false
    }
}
