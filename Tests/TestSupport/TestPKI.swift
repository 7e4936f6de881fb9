public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Thrown when test set-up (a certificate, a helper server) cannot be made.
public struct TestSetupFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Runs `openssl` with `arguments` in `directory`; throws with its stderr on a non-zero exit.
public func openssl(_ arguments: [String], in directory: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    process.standardOutput = FileHandle.nullDevice
    let errors = Pipe()
    process.standardError = errors
    try process.run()
    // Read before waiting: a full pipe would block openssl.
    let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw TestSetupFailure("openssl \(arguments.first ?? ""): \(message)")
    }
}

/// A throwaway PKI in `directory` (EC P-256, valid 2 days): the CA a client pins (`ca.pem`),
/// a server certificate for 127.0.0.1 signed by it (`server.pem`, `server.key`), and an
/// unrelated CA (`other-ca.pem`, for wrong-certificate tests).
public struct TestPKI: Sendable {
    public let directory: String
    public var caFile: String { directory + "/ca.pem" }
    public var otherCAFile: String { directory + "/other-ca.pem" }
    public var serverCertFile: String { directory + "/server.pem" }
    public var serverKeyFile: String { directory + "/server.key" }

    public init(directory: String) throws {
        self.directory = directory
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for name in ["ca", "other-ca"] {
            try openssl(
                ["req", "-x509"] + ec + [
                    "-keyout", "\(name).key", "-out", "\(name).pem", "-days", "2",
                    "-subj", "/CN=Beeldzorg test \(name)",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                ], in: directory)
        }
        try openssl(
            ["req", "-new"] + ec + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
            in: directory)
        try "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
            .write(toFile: directory + "/server.ext", atomically: true, encoding: .utf8)
        try openssl(
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
            ], in: directory)
    }
}
