import FoundationEssentials

/// RFC 3263 §4 for an edge proxy's URI, without I/O: what to ask DNS, how to order SRV targets,
/// and (`ProxyResolution`) when to ask again. The queries themselves run on the resolver's
/// thread (`DNSResolver`); the user agent only feeds answers in and acts on what comes out.

/// One address to try, in order: an IP literal and the port.
public struct ServerCandidate: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// What DNS must be asked for one URI (RFC 3263 §4.1–4.2; NAPTR is not used: the transport is
/// always configured).
struct ServerLookup: Equatable, Sendable {
    /// The host to resolve (a DNS name), or an IP literal that needs no DNS at all.
    var host: String
    /// The URI's explicit port: then no SRV, only A/AAAA (§4.2).
    var port: Int?
    /// `_sips._tcp`, `_sip._tcp` or `_sip._udp` for the transport.
    var service: String
    /// 5061 for TLS, else 5060 (when neither SRV nor the URI gives one).
    var defaultPort: Int
    var isLiteral: Bool

    /// nil for a URI that is not `sip:`/`sips:`.
    init?(uri: String) {
        guard let parsed = SIPURI(uri) else { return nil }
        let transport = parsed.parameters["transport"]?.lowercased() ?? (parsed.scheme == "sips" ? "tls" : "udp")
        let tls = parsed.scheme == "sips" || transport == "tls"
        host = parsed.host
        port = parsed.port
        service = tls ? "_sips._tcp" : transport == "tcp" ? "_sip._tcp" : "_sip._udp"
        defaultPort = tls ? 5061 : 5060
        isLiteral = Self.isIPLiteral(parsed.host)
    }

    /// The SRV name to ask, or nil when SRV does not apply (an explicit port or an IP literal).
    var srvName: String? { port == nil && !isLiteral ? "\(service).\(host)" : nil }

    static func isIPLiteral(_ host: String) -> Bool {
        if host.contains(":") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }

    /// RFC 2782 ordering: lowest priority first; within one priority, a weighted random order
    /// (each pick: a running sum over the remaining weights, zero weights first, and the first
    /// record whose running sum reaches `random(0...total)`). `random(n)` returns 0...n.
    static func order(_ records: [SRVRecord], random: (Int) -> Int) -> [SRVRecord] {
        let priorities = Set(records.map(\.priority)).sorted()
        var ordered: [SRVRecord] = []
        for priority in priorities {
            var remaining = records.filter { $0.priority == priority }
                .sorted { ($0.weight == 0 ? 0 : 1, $0.target, $0.port) < ($1.weight == 0 ? 0 : 1, $1.target, $1.port) }
            while !remaining.isEmpty {
                let total = remaining.reduce(0) { $0 + $1.weight }
                let pick = random(total)
                var sum = 0
                var chosen = remaining.count - 1
                for (index, record) in remaining.enumerated() {
                    sum += record.weight
                    if sum >= pick {
                        chosen = index
                        break
                    }
                }
                ordered.append(remaining.remove(at: chosen))
            }
        }
        return ordered
    }
}

/// When to resolve one edge proxy's name again, and which addresses to use: events in, actions
/// out, no clock (delays are relative; the user agent runs the timer).
///
/// - Answers are used until their smallest TTL runs out (at least `minimumTTL`), then asked again.
/// - A failed query is retried after 1 s for the first ten tries (a resolver that comes up is
///   found within about a second), then with doubling up to `maximumRetry`.
/// - A network change, or every candidate failing to register, asks again at once (the
///   network's resolver or the records may have changed); a query in flight is followed by
///   another when it ends.
/// - Until the first answer the last good addresses from disk are used, if any.
struct ProxyResolution: Equatable, Sendable {
    enum Event: Equatable, Sendable {
        /// `cached`: last good addresses from disk.
        case start(cached: [ServerCandidate])
        case answered([ServerCandidate], ttl: Int)
        case failed(reason: String)
        case timerFired
        case networkChanged
        /// Every candidate was tried and none registered.
        case allCandidatesFailed
    }

    enum Action: Equatable, Sendable {
        /// Run the lookup now (on the resolver thread) and feed `.answered`/`.failed` back.
        case query
        /// Fire `.timerFired` after this long (replaces any earlier one).
        case scheduleQuery(after: Duration)
        /// Register to these, in this order.
        case useCandidates([ServerCandidate])
        /// Keep these on disk as the last good addresses.
        case persist([ServerCandidate])
    }

    static let minimumTTL = 1
    static let maximumTTL = 86_400
    static let maximumRetry: Duration = .seconds(30)

    let lookup: ServerLookup
    private(set) var candidates: [ServerCandidate] = []
    private(set) var querying = false
    private(set) var queryAgain = false
    private(set) var failures = 0
    /// The last failure's reason, until an answer comes (for status).
    private(set) var problem: String?

    init(lookup: ServerLookup) {
        self.lookup = lookup
    }

    mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .start(let cached):
            if lookup.isLiteral {
                candidates = [ServerCandidate(host: lookup.host, port: lookup.port ?? lookup.defaultPort)]
                return [.useCandidates(candidates)]
            }
            candidates = cached
            querying = true
            return (cached.isEmpty ? [] : [.useCandidates(cached)]) + [.query]
        case .answered(let answer, let ttl):
            guard !answer.isEmpty else { return handle(.failed(reason: "no addresses for \(lookup.host)")) }
            querying = false
            failures = 0
            problem = nil
            var actions: [Action] = []
            if answer != candidates {
                candidates = answer
                actions += [.useCandidates(answer), .persist(answer)]
            }
            if queryAgain {
                queryAgain = false
                querying = true
                return actions + [.query]
            }
            return actions + [.scheduleQuery(after: .seconds(min(Self.maximumTTL, max(Self.minimumTTL, ttl))))]
        case .failed(let reason):
            querying = false
            failures += 1
            problem = reason
            if queryAgain {
                queryAgain = false
                querying = true
                return [.query]
            }
            return [.scheduleQuery(after: retryDelay)]
        case .timerFired:
            guard !lookup.isLiteral, !querying else { return [] }
            querying = true
            return [.query]
        case .networkChanged, .allCandidatesFailed:
            guard !lookup.isLiteral else { return [] }
            if case .networkChanged = event { failures = 0 }
            if querying {
                queryAgain = true
                return []
            }
            querying = true
            return [.query]
        }
    }

    private var retryDelay: Duration {
        guard failures > 10 else { return .seconds(1) }
        return min(Self.maximumRetry, .seconds(1 << min(failures - 10, 5)))
    }
}

/// The last good addresses of DNS-named edge proxies, one line each:
/// `<proxy URI> <address> <port> [<address> <port> …]`. Small, written whole and renamed into
/// place, so a power cut leaves the old file or the new one.
enum ServerAddressCache {
    static func read(_ path: String?) -> [String: [ServerCandidate]] {
        guard let path, let data = try? Data(contentsOf: URL(filePath: path)) else { return [:] }
        var result: [String: [ServerCandidate]] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count >= 3, fields.count % 2 == 1 else { continue }
            var candidates: [ServerCandidate] = []
            for pair in stride(from: 1, to: fields.count, by: 2) {
                guard let port = Int(fields[pair + 1]), (1...65535).contains(port),
                      ServerLookup.isIPLiteral(fields[pair]) else { continue }
                candidates.append(ServerCandidate(host: fields[pair], port: port))
            }
            if !candidates.isEmpty { result[fields[0]] = candidates }
        }
        return result
    }

    /// nil on success, else what went wrong.
    static func write(_ entries: [String: [ServerCandidate]], to path: String) -> String? {
        let text = entries.keys.sorted().map { uri in
            ([uri] + entries[uri]!.flatMap { [$0.host, "\($0.port)"] }).joined(separator: " ")
        }.joined(separator: "\n") + "\n"
        do {
            try Data(text.utf8).write(to: URL(filePath: path), options: .atomic)
            return nil
        } catch {
            return "\(error)"
        }
    }
}

/// /etc/hosts, which getaddrinfo consults before DNS (nsswitch `files dns`) and libresolv does
/// not: a name found there (`localhost`, or one an installer wrote) is used as is, without
/// SRV, as the rest of the system would.
enum HostsFile {
    /// The addresses `name` has in `text` (hosts(5): address, then names; `#` comments), in
    /// file order, without repeats.
    static func addresses(of name: String, in text: String) -> [String] {
        var found: [String] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let fields = line.prefix { $0 != "#" }.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard fields.count >= 2, ServerLookup.isIPLiteral(fields[0]),
                  fields.dropFirst().contains(where: { $0.lowercased() == name.lowercased() }),
                  !found.contains(fields[0])
            else { continue }
            found.append(fields[0])
        }
        return found
    }

    static func addresses(of name: String, path: String = "/etc/hosts") -> [String] {
        guard let data = try? Data(contentsOf: URL(filePath: path)) else { return [] }
        return addresses(of: name, in: String(decoding: data, as: UTF8.self))
    }
}
