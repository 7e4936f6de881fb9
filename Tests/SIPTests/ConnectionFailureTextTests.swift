import Glibc
import NIOCore
import Testing

@testable import SIP

/// The reasons a technician reads when a TCP/TLS connection to an edge proxy fails (log lines
/// and `beeldzorgctl status`).
struct ConnectionFailureTextTests {
    /// ENETUNREACH, as NIO reports a connect with the link down (seen in a network namespace
    /// without routes): the words and the errno, and parentheses that balance.
    @Test(arguments: [ENETUNREACH, ECONNREFUSED, EHOSTUNREACH])
    func aConnectErrorReadsCleanly(code: Int32) {
        let text = describe(IOError(errnoCode: code, reason: "connect(descriptor:addr:size:)"))
        #expect(text.contains(String(cString: strerror(code))) && text.contains("errno \(code)"), "\(text)")
        #expect(text.filter { $0 == "(" }.count == text.filter { $0 == ")" }.count, "\(text)")
    }
}
