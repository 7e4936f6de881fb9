import Testing

@testable import SIP

/// rtnetlink datagrams as the kernel lays them out (host byte order), parsed by the watcher;
/// the real socket is exercised by NetworkChangeTests.
struct NetworkWatcherTests {
    /// One netlink message: nlmsghdr (len, type, flags, seq, pid) and a payload, padded to 4.
    func message(type: UInt16, payload: [UInt8]) -> [UInt8] {
        let length = UInt32(16 + payload.count)
        var bytes = withUnsafeBytes(of: length) { Array($0) } + withUnsafeBytes(of: type) { Array($0) }
        bytes += [0, 0] + [UInt8](repeating: 0, count: 8) + payload
        while bytes.count % 4 != 0 { bytes.append(0) }
        return bytes
    }

    /// struct ifinfomsg with `flags`.
    func link(flags: UInt32) -> [UInt8] {
        [2, 0, 1, 0] + withUnsafeBytes(of: UInt32(3)) { Array($0) } + withUnsafeBytes(of: flags) { Array($0) }
            + [0, 0, 0, 0]
    }

    @Test func countsLinksAddressesAndRoutesAndSeesALinkComeUp() {
        let datagram = message(type: 16, payload: link(flags: 0x1 | 0x40))  // RTM_NEWLINK, IFF_UP|IFF_RUNNING
            + message(type: 20, payload: [UInt8](repeating: 0, count: 8))  // RTM_NEWADDR
            + message(type: 24, payload: [UInt8](repeating: 0, count: 12))  // RTM_NEWROUTE
            + message(type: 25, payload: [UInt8](repeating: 0, count: 12))  // RTM_DELROUTE
        var change = NetworkChange()
        #expect(NetworkWatcher.parse(datagram[...], into: &change))
        #expect(change.links == 1 && change.addresses == 1 && change.routes == 2 && change.linkCameUp)
    }

    @Test func aLinkGoingDownIsAChangeButNotUp() {
        var change = NetworkChange()
        #expect(NetworkWatcher.parse(message(type: 16, payload: link(flags: 0x1))[...], into: &change))  // up, no carrier
        #expect(change.links == 1 && !change.linkCameUp)
    }

    @Test func otherMessagesAndMalformedLengthsAreIgnoredSafely() {
        var change = NetworkChange()
        #expect(!NetworkWatcher.parse(message(type: 28, payload: [1, 2, 3, 4])[...], into: &change))  // RTM_NEWNEIGH
        var lying = message(type: 20, payload: [0, 0, 0, 0])
        lying[0] = 0xFF  // claims 255 bytes, has 20
        #expect(!NetworkWatcher.parse(lying[...], into: &change))
        var tooShort = message(type: 20, payload: [])
        tooShort[0] = 4  // shorter than its own header
        #expect(!NetworkWatcher.parse(tooShort[...], into: &change))
        #expect(!NetworkWatcher.parse([1, 2, 3][...], into: &change))
        // A good message after a short one is not reached (the walk stops), and nothing traps.
        #expect(change == NetworkChange())
    }
}

/// STUN as our UDP keepalive uses it, against bytes Kamailio 5.6's `stun` module really sent.
struct STUNTests {
    static let kamailioAnswer = "010100382112a442d22ccc32be573ce4f305f0a8002000080001908a5e12a443"
        + "802200275365727665723a206b616d61696c696f2028352e362e3320287838365f36342f6c696e7578292900"

    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            out.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return out
    }

    @Test func readsKamailiosBindingSuccess() throws {
        let answer = try #require(STUN.parseBindingSuccess(Self.bytes(Self.kamailioAnswer)))
        #expect(answer.transaction == Self.bytes("d22ccc32be573ce4f305f0a8"))
        #expect(answer.mapped?.ipAddress == "127.0.0.1")
        #expect(answer.mapped?.port == 0x908a ^ 0x2112)
    }

    @Test func requestsAreTwentyBytesAndToldApartFromSIP() {
        let transaction = STUN.newTransaction()
        let request = STUN.bindingRequest(transaction: transaction)
        #expect(request.count == 20 && STUN.isSTUN(request) && Array(request[8...]) == transaction)
        #expect(STUN.parseBindingSuccess(request) == nil)  // a request, not an answer
        #expect(!STUN.isSTUN(Array("OPTIONS sip:x SIP/2.0\r\n\r\n".utf8)))
    }

    @Test func truncatedOrLyingAnswersAreRejected() {
        var answer = Self.bytes(Self.kamailioAnswer)
        #expect(STUN.parseBindingSuccess(Array(answer.prefix(30))) == nil)  // length says 56
        answer[23] = 0xFF  // XOR-MAPPED-ADDRESS claims 255 bytes
        #expect(STUN.parseBindingSuccess(answer) == nil)
    }
}
