public import BeeldzorgConfig
public import Foundation
import NIOSSL
#if canImport(Glibc)
import Glibc
#endif

/// The files a configuration names, checked before the daemon relies on them: each exists,
/// the daemon's user can read it, secrets (SIP password, provisioning token) belong to that
/// user with no access for anyone else, CA files hold PEM certificates that are valid now.
///
/// `beeldzorgd --check-config` runs this (as root for the `beeldzorg` user, so the
/// installer's check says what the daemon will meet) and so does every start of the daemon;
/// a fault is exit status 78 (`Beeldzorgd`), never a loop of half-starts.
public enum ConfigurationFiles {
    /// One finding, naming the key, its line in the configuration and the file.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public enum Severity: String, Sendable { case fault, warning }
        public var severity: Severity
        public var key: String
        public var line: Int?
        public var path: String
        public var message: String

        public var description: String {
            "'\(key)'\(line.map { " (line \($0))" } ?? ""): \(path): \(message)"
        }
    }

    /// Who the daemon runs as: the files are judged for this user.
    public struct Reader: Sendable, Equatable {
        public var name: String
        public var uid: uid_t
        public var gids: [gid_t]

        /// The calling process itself.
        public static var current: Reader {
            let uid = geteuid()
            var gids = [gid_t](repeating: 0, count: Int(max(getgroups(0, nil), 0)))
            let count = getgroups(Int32(gids.count), &gids)
            gids = Array(gids.prefix(Int(max(count, 0))))
            gids.append(getegid())
            let name = getpwuid(uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(uid)"
            return Reader(name: name, uid: uid, gids: gids)
        }

        /// A user from the password database with all its groups, or nil when there is none.
        public static func named(_ name: String) -> Reader? {
            guard let entry = getpwnam(name) else { return nil }
            let uid = entry.pointee.pw_uid
            let primary = entry.pointee.pw_gid
            var count: Int32 = 64
            var gids = [gid_t](repeating: 0, count: Int(count))
            if getgrouplist(name, primary, &gids, &count) < 0 {
                gids = [gid_t](repeating: 0, count: Int(count))
                _ = getgrouplist(name, primary, &gids, &count)
            }
            return Reader(name: name, uid: uid, gids: Array(gids.prefix(Int(max(count, 0)))) + [primary])
        }

        /// For `--check-config`: the daemon's user `beeldzorg` when run as root on a system
        /// that has it (the image, the installer's check), else the caller.
        public static var daemonUser: Reader {
            if geteuid() == 0, let user = named("beeldzorg") { return user }
            return .current
        }
    }

    /// PEM files larger than this are refused unread (a CA bundle is some hundreds of KiB).
    static let maximumPEMBytes = 1 << 20

    public static func check(_ configuration: Configuration, as reader: Reader, now: Date = Date()) -> [Problem] {
        var problems: [Problem] = []
        func line(_ key: String) -> Int? { configuration.lines[key] }
        if let file = configuration.account.passwordFile {
            problems += secret(key: "account.password_file", line: line("account.password_file"), path: file, reader: reader)
        }
        if let file = configuration.caFile {
            problems += certificates(key: "ca_file", line: line("ca_file"), path: file, reader: reader, now: now)
        }
        if let provisioning = configuration.provisioning {
            problems += secret(key: "provisioning.token_file", line: line("provisioning.token_file"),
                               path: provisioning.tokenFile, reader: reader)
            if let file = provisioning.caFile {
                problems += certificates(key: "provisioning.ca_file", line: line("provisioning.ca_file"),
                                         path: file, reader: reader, now: now)
            }
        }
        // Without these the tablet still calls (no text, or no spoken prompts): warnings.
        let screenDevice = configuration.screen.device
        if screenDevice != "none" {
            problems += readable(key: "screen.font", line: line("screen.font"), path: configuration.screen.font,
                                 reader: reader, severity: .warning)
        }
        let prompts = "\(configuration.promptsDirectory)/\(configuration.language).txt"
        problems += readable(key: "prompts", line: line("prompts"), path: prompts, reader: reader, severity: .warning)
        return problems
    }

    // MARK: Kinds of file

    static func secret(key: String, line: Int?, path: String, reader: Reader) -> [Problem] {
        func fault(_ message: String) -> [Problem] {
            [Problem(severity: .fault, key: key, line: line, path: path, message: message)]
        }
        let found = readable(key: key, line: line, path: path, reader: reader, severity: .fault)
        if !found.isEmpty { return found }
        var st = stat()
        guard stat(path, &st) == 0 else { return fault("cannot be examined: \(String(cString: strerror(errno)))") }
        if st.st_uid != reader.uid {
            let owner = getpwuid(st.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(st.st_uid)"
            return fault("a secret must belong to \(reader.name), the daemon's user, not \(owner) (`chown \(reader.name) \(path)`)")
        }
        let mode = st.st_mode & 0o777
        if mode & 0o077 != 0 {
            return fault("mode \(String(format: "%04o", mode)) lets others read this secret; it must be 0600 (`chmod 0600 \(path)`)")
        }
        if st.st_size == 0 { return fault("is empty") }
        return []
    }

    static func certificates(key: String, line: Int?, path: String, reader: Reader, now: Date) -> [Problem] {
        func fault(_ message: String) -> [Problem] {
            [Problem(severity: .fault, key: key, line: line, path: path, message: message)]
        }
        let found = readable(key: key, line: line, path: path, reader: reader, severity: .fault)
        if !found.isEmpty { return found }
        let bytes: [UInt8]
        switch readBounded(path, limit: maximumPEMBytes) {
        case .success(let read): bytes = read
        case .failure(let message): return fault(message)
        }
        guard bytes.contains(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) else {
            return fault("is empty; expected the CA certificate(s) in PEM")
        }
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            return fault("holds no readable PEM certificate (expected -----BEGIN CERTIFICATE-----)")
        }
        guard !certificates.isEmpty else { return fault("holds no PEM certificate") }
        let clock = time_t(now.timeIntervalSince1970)
        var problems: [Problem] = []
        for (index, certificate) in certificates.enumerated() {
            let which = certificates.count == 1 ? "the certificate" : "certificate \(index + 1) of \(certificates.count)"
            let name = commonName(certificate).map { " (\($0))" } ?? ""
            if certificate.notValidAfter < clock {
                problems += fault("\(which)\(name) expired on \(Self.date(certificate.notValidAfter)); install the current CA certificate")
            } else if certificate.notValidBefore > clock {
                problems += fault("\(which)\(name) is not valid before \(Self.date(certificate.notValidBefore)); check the clock (`timedatectl`) or the certificate")
            }
        }
        return problems
    }

    /// Exists, is a regular file, and the reader can reach and read it.
    static func readable(key: String, line: Int?, path: String, reader: Reader, severity: Problem.Severity) -> [Problem] {
        func problem(_ message: String) -> [Problem] {
            [Problem(severity: severity, key: key, line: line, path: path, message: message)]
        }
        var st = stat()
        if stat(path, &st) != 0 {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return problem("does not exist") }
            if code == EACCES {
                return problem("\(reader.name) cannot read it: a directory on the way is closed to it (\(String(cString: strerror(code))))")
            }
            return problem("cannot be examined: \(String(cString: strerror(code)))")
        }
        if (st.st_mode & S_IFMT) != S_IFREG { return problem("is not a regular file") }
        if let blocked = access(path, for: reader) { return problem("\(reader.name) cannot read it: \(blocked)") }
        return []
    }

    /// Why `reader` cannot read `path`, or nil when it can. For the calling process the kernel
    /// answers (access(2)); for another user every directory on the way and the file's own
    /// mode are judged the way the kernel would (owner, then group, then others; no ACLs).
    static func access(_ path: String, for reader: Reader) -> String? {
        if reader.uid == geteuid() {
            return Glibc.access(path, R_OK) == 0 ? nil : String(cString: strerror(errno))
        }
        if reader.uid == 0 { return nil }
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        var directory = "/"
        for component in absolute.split(separator: "/").dropLast() {
            directory = directory == "/" ? "/\(component)" : "\(directory)/\(component)"
            var st = stat()
            guard stat(directory, &st) == 0 else { return "\(directory): \(String(cString: strerror(errno)))" }
            if !permits(st, reader, bit: 0o1) { return "\(directory) is closed to it (mode \(String(format: "%04o", st.st_mode & 0o7777)))" }
        }
        var st = stat()
        guard stat(absolute, &st) == 0 else { return String(cString: strerror(errno)) }
        if !permits(st, reader, bit: 0o4) {
            return "mode \(String(format: "%04o", st.st_mode & 0o7777)), owner uid \(st.st_uid), group gid \(st.st_gid)"
        }
        return nil
    }

    private static func permits(_ st: stat, _ reader: Reader, bit: mode_t) -> Bool {
        if st.st_uid == reader.uid { return st.st_mode & (bit << 6) != 0 }
        if reader.gids.contains(st.st_gid) { return st.st_mode & (bit << 3) != 0 }
        return st.st_mode & bit != 0
    }

    private enum ReadResult { case success([UInt8]), failure(String) }

    private static func readBounded(_ path: String, limit: Int) -> ReadResult {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure("cannot be opened: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure("cannot be read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            count += n
        }
        if count > limit { return .failure("is larger than \(limit) bytes; not a CA file") }
        return .success(Array(bytes[0..<count]))
    }

    private static func commonName(_ certificate: NIOSSLCertificate) -> String? {
        // NIOSSL keeps its commonName() internal; its description carries it.
        let text = certificate.description
        guard let range = text.range(of: ";common_name=") else { return nil }
        let rest = text[range.upperBound...]
        let end = rest.firstIndex(where: { $0 == ";" || $0 == ">" }) ?? rest.endIndex
        let name = String(rest[..<end])
        return name.isEmpty ? nil : "CN=\(name)"
    }

    static func date(_ time: time_t) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(time)))
    }
}
