import Glibc
import Testing

@testable import SIP

/// RFC 3263 without I/O: what to ask DNS, SRV ordering, DNS answer parsing, and when a name is
/// resolved again (`ProxyResolution`, events in, actions out).
@Suite struct ServerLocationTests {
    @Test func lookupFollowsTheTransportAndThePort() throws {
        let tls = try #require(ServerLookup(uri: "sip:edge.zorg.example;transport=tls"))
        #expect(tls.srvName == "_sips._tcp.edge.zorg.example" && tls.defaultPort == 5061)
        #expect(ServerLookup(uri: "sip:edge.zorg.example;transport=tcp")?.srvName == "_sip._tcp.edge.zorg.example")
        #expect(ServerLookup(uri: "sip:edge.zorg.example")?.srvName == "_sip._udp.edge.zorg.example")
        #expect(ServerLookup(uri: "sips:edge.zorg.example")?.srvName == "_sips._tcp.edge.zorg.example")
        // An explicit port or an address: no SRV (RFC 3263 §4.2).
        #expect(ServerLookup(uri: "sip:edge.zorg.example:5070;transport=tls")?.srvName == nil)
        let literal = try #require(ServerLookup(uri: "sip:10.1.2.3;transport=tls"))
        #expect(literal.isLiteral && literal.srvName == nil)
        #expect(ServerLookup(uri: "http://x") == nil)
    }

    @Test func srvTargetsGoByPriorityThenWeight() {
        let records = [
            SRVRecord(priority: 20, weight: 0, port: 5061, target: "backup.example", ttl: 60),
            SRVRecord(priority: 10, weight: 10, port: 5061, target: "a.example", ttl: 60),
            SRVRecord(priority: 10, weight: 90, port: 5061, target: "b.example", ttl: 60),
        ]
        // random 0 picks the first in running-sum order (a), the highest value the heaviest (b).
        #expect(ServerLookup.order(records, random: { _ in 0 }).map(\.target) == ["a.example", "b.example", "backup.example"])
        #expect(ServerLookup.order(records, random: { $0 }).map(\.target) == ["b.example", "a.example", "backup.example"])
        #expect(ServerLookup.order(records, random: { _ in 50 }).map(\.target) == ["b.example", "a.example", "backup.example"])
    }

    /// A dnsmasq-shaped SRV answer with a compressed target name, and an A answer behind a CNAME.
    @Test func dnsAnswersAreParsedWithTheirTTLs() {
        var srv: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]
        srv += [5] + Array("_sips".utf8) + [4] + Array("_tcp".utf8) + [4] + Array("zorg".utf8) + [4] + Array("test".utf8) + [0, 0, 33, 0, 1]
        srv += [0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 30, 0, 12, 0, 10, 0, 5, 0x13, 0xC4] + [3] + Array("edg".utf8) + [0xC0, 23]
        #expect(DNSMessage.srvRecords(srv) == [SRVRecord(priority: 10, weight: 5, port: 5060, target: "edg.zorg.test", ttl: 30)])

        var a: [UInt8] = [0, 1, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0]
        a += [1] + Array("x".utf8) + [0, 0, 1, 0, 1]
        a += [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 7, 0, 3, 1] + Array("y".utf8) + [0]
        a += [0xC0, 29, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 10, 0, 0, 9]
        #expect(DNSMessage.addressRecords(a, type: .a) == [AddressRecord(address: "10.0.0.9", ttl: 7)])
        #expect(DNSMessage.addressRecords(a, type: .aaaa).isEmpty)
        // Truncated or looping input gives nothing, never a crash.
        #expect(DNSMessage.srvRecords(Array(srv.prefix(40))).isEmpty)
        #expect(DNSMessage.name([0xC0, 0], at: 0) == nil)
    }

    @Test func resolutionWaitsForDNSRetriesEverySecondAndFollowsTTLs() throws {
        let lookup = try #require(ServerLookup(uri: "sip:edge.zorg.test;transport=tls"))
        var resolution = ProxyResolution(lookup: lookup)
        // Power-on without DNS and nothing on disk: ask, and keep asking every second.
        #expect(resolution.handle(.start(cached: [])) == [.query])
        #expect(resolution.handle(.failed(reason: "DNS: no answer")) == [.scheduleQuery(after: .seconds(1))])
        #expect(resolution.problem == "DNS: no answer")
        #expect(resolution.handle(.timerFired) == [.query])
        #expect(resolution.handle(.timerFired) == [], "one query at a time")
        let first = [ServerCandidate(host: "10.0.0.1", port: 5061), ServerCandidate(host: "10.0.0.2", port: 5062)]
        #expect(resolution.handle(.answered(first, ttl: 30))
                == [.useCandidates(first), .persist(first), .scheduleQuery(after: .seconds(30))])
        #expect(resolution.problem == nil)
        // TTL ran out: ask again; the same answer changes nothing.
        #expect(resolution.handle(.timerFired) == [.query])
        #expect(resolution.handle(.answered(first, ttl: 0)) == [.scheduleQuery(after: .seconds(1))])
        // A network change while a query is out: another follows it.
        #expect(resolution.handle(.timerFired) == [.query])
        #expect(resolution.handle(.networkChanged) == [])
        let changed = [ServerCandidate(host: "10.0.0.3", port: 5061)]
        #expect(resolution.handle(.answered(changed, ttl: 60)) == [.useCandidates(changed), .persist(changed), .query])
        #expect(resolution.handle(.answered(changed, ttl: 60)) == [.scheduleQuery(after: .seconds(60))])
        #expect(resolution.handle(.allCandidatesFailed) == [.query])
    }

    @Test func lastGoodAddressesAreTriedFirstAndLiteralsNeedNoDNS() throws {
        var resolution = ProxyResolution(lookup: try #require(ServerLookup(uri: "sip:edge.zorg.test;transport=tls")))
        let cached = [ServerCandidate(host: "10.0.0.1", port: 5061)]
        #expect(resolution.handle(.start(cached: cached)) == [.useCandidates(cached), .query])
        #expect(resolution.handle(.answered(cached, ttl: 10)) == [.scheduleQuery(after: .seconds(10))])

        var literal = ProxyResolution(lookup: try #require(ServerLookup(uri: "sip:10.9.8.7;transport=tls")))
        #expect(literal.handle(.start(cached: [])) == [.useCandidates([ServerCandidate(host: "10.9.8.7", port: 5061)])])
        #expect(literal.handle(.networkChanged) == [] && literal.handle(.allCandidatesFailed) == [])
    }

    @Test func slowRetriesAfterTenFailures() throws {
        var resolution = ProxyResolution(lookup: try #require(ServerLookup(uri: "sip:edge.zorg.test")))
        _ = resolution.handle(.start(cached: []))
        var delays: [Duration] = []
        for _ in 0..<16 {
            for case .scheduleQuery(let delay) in resolution.handle(.failed(reason: "x")) { delays.append(delay) }
            _ = resolution.handle(.timerFired)
        }
        #expect(delays.prefix(10).allSatisfy { $0 == .seconds(1) })
        #expect(Array(delays.suffix(6)) == [.seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30)])
    }

    @Test func addressCacheSurvivesARoundTrip() throws {
        let path = "/tmp/bz-address-cache-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(path) }
        let entries = ["sip:edge.zorg.test;transport=tls": [ServerCandidate(host: "10.0.0.1", port: 5061),
                                                            ServerCandidate(host: "2001:db8:0:0:0:0:0:1", port: 5062)]]
        #expect(ServerAddressCache.write(entries, to: path) == nil)
        #expect(ServerAddressCache.read(path) == entries)
        #expect(ServerAddressCache.read("/nonexistent/x").isEmpty)
    }

    /// getaddrinfo finds `localhost` and installer-written names in /etc/hosts; libresolv does
    /// not, so the resolver reads the file first.
    @Test func hostsFileNamesNeedNoDNS() {
        let text = """
            127.0.0.1\tlocalhost
            # 10.0.0.9 edge.zorg.test
            ::1     localhost ip6-localhost ip6-loopback
            10.0.0.7 Edge.Zorg.Test edge   # the installer's
            bad-line
            """
        #expect(HostsFile.addresses(of: "localhost", in: text) == ["127.0.0.1", "::1"])
        #expect(HostsFile.addresses(of: "edge.zorg.test", in: text) == ["10.0.0.7"])
        #expect(HostsFile.addresses(of: "other.zorg.test", in: text).isEmpty)
    }
}
