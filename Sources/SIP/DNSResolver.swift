private import CResolv
import Glibc

/// RFC 3263 lookups (SRV, then A/AAAA) with glibc's stub resolver (libresolv `res_nquery`),
/// each on a short-lived thread of its own, so a slow or absent DNS server never blocks the
/// user agent's actor or the event loop.
///
/// Why a thread and not c-ares: Debian 12's c-ares (1.18) gives SRV answers without their TTLs
/// and has no way to re-read resolv.conf short of a new channel, and it would want its sockets
/// driven from our event loop; a lookup happens once per TTL per edge proxy, so one blocking
/// thread per lookup is both simpler and idle-free (no thread or timer between lookups).
/// `res_ninit` reads /etc/resolv.conf afresh for every lookup, so a new DHCP lease's DNS
/// server is used at once.
enum DNSResolver {
    enum Outcome: Equatable, Sendable {
        case answered([ServerCandidate], ttl: Int)
        case failed(reason: String)
    }

    /// Each server is given 1 s per try, two tries per query.
    static let timeoutSeconds: Int32 = 1
    static let attempts: Int32 = 2

    static func resolve(_ lookup: ServerLookup) async -> Outcome {
        await withCheckedContinuation { continuation in
            startThread { continuation.resume(returning: resolveBlocking(lookup)) }
        }
    }

    /// The whole RFC 3263 lookup, blocking; runs on its own thread.
    static func resolveBlocking(_ lookup: ServerLookup) -> Outcome {
        if lookup.isLiteral {
            return .answered([ServerCandidate(host: lookup.host, port: lookup.port ?? lookup.defaultPort)], ttl: ProxyResolution.maximumTTL)
        }
        let hosts = HostsFile.addresses(of: lookup.host)
        if !hosts.isEmpty {
            // Read again when this "TTL" runs out, so an edited file is followed.
            return .answered(hosts.map { ServerCandidate(host: $0, port: lookup.port ?? lookup.defaultPort) }, ttl: 300)
        }
        guard let state = beeldzorg_resolver_open(timeoutSeconds, attempts) else {
            return .failed(reason: "DNS: cannot read the resolver configuration")
        }
        defer { beeldzorg_resolver_close(state) }
        if let srvName = lookup.srvName {
            switch query(state, srvName, .srv) {
            case .success(let message):
                let records = DNSMessage.srvRecords(message)
                if !records.isEmpty {
                    var candidates: [ServerCandidate] = []
                    var ttl = records.map(\.ttl).min() ?? ProxyResolution.maximumTTL
                    var lastProblem = "DNS: no addresses for the SRV targets of \(srvName)"
                    for record in ServerLookup.order(records, random: { Int.random(in: 0...$0) }) {
                        switch addresses(state, record.target) {
                        case .success(let found):
                            ttl = min(ttl, found.map(\.ttl).min() ?? ttl)
                            candidates += found.map { ServerCandidate(host: $0.address, port: record.port) }
                        case .failure(let problem):
                            lastProblem = problem.description
                        }
                    }
                    return candidates.isEmpty ? .failed(reason: lastProblem) : .answered(candidates, ttl: ttl)
                }
            case .failure(let problem) where problem.nameOrDataMissing:
                break  // no SRV records: A/AAAA of the host itself (RFC 3263 §4.2)
            case .failure(let problem):
                return .failed(reason: problem.description)
            }
        }
        switch addresses(state, lookup.host) {
        case .success(let found):
            let port = lookup.port ?? lookup.defaultPort
            return .answered(found.map { ServerCandidate(host: $0.address, port: port) },
                             ttl: found.map(\.ttl).min() ?? ProxyResolution.maximumTTL)
        case .failure(let problem):
            return .failed(reason: problem.description)
        }
    }

    struct Problem: Error, CustomStringConvertible {
        var name: String
        var code: Int32
        var nameOrDataMissing: Bool { code == 1 || code == 4 }  // HOST_NOT_FOUND, NO_DATA
        var description: String {
            switch code {
            case 1: "DNS: \(name) does not exist"
            case 4: "DNS: no records for \(name)"
            default: "DNS: no answer for \(name) (no DNS server reachable)"
            }
        }
    }

    /// A records, then AAAA; fails only when neither gave any.
    private static func addresses(_ state: res_state?, _ name: String) -> Result<[AddressRecord], Problem> {
        var found: [AddressRecord] = []
        var problem: Problem?
        for type in [DNSRecordType.a, .aaaa] {
            switch query(state, name, type) {
            case .success(let message): found += DNSMessage.addressRecords(message, type: type)
            case .failure(let failure): problem = problem ?? failure
            }
        }
        if found.isEmpty { return .failure(problem ?? Problem(name: name, code: 4)) }
        return .success(found)
    }

    private static func query(_ state: res_state?, _ name: String, _ type: DNSRecordType) -> Result<[UInt8], Problem> {
        var answer = [UInt8](repeating: 0, count: 4096)
        var error: Int32 = 0
        let length = beeldzorg_resolver_query(state, name, Int32(type.rawValue), &answer, Int32(answer.count), &error)
        guard length >= 0 else { return .failure(Problem(name: name, code: error)) }
        return .success(Array(answer.prefix(Int(length))))
    }
}
