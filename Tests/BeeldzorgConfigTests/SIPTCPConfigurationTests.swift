import BeeldzorgConfig
import Testing

/// `sip_tcp:`: limits on the SIP/TCP connections others open to the tablet (issue 15, 3).
@Suite struct SIPTCPConfigurationTests {
    @Test func theDefaultsHoldWithoutTheSection() throws {
        let tcp = try Configuration.parse(minimalConfiguration).sipTCP
        #expect(tcp == Configuration.SIPTCP(maxConnections: 128, maxConnectionsPerAddress: 32,
                                            idleTimeoutSeconds: 64, headerTimeoutSeconds: 10))
    }

    @Test func valuesAreRead() throws {
        let text = minimalConfiguration + """

            sip_tcp:
              max_connections: 64
              max_connections_per_address: 8
              idle_timeout_seconds: 3
              header_timeout_seconds: 2
            """
        let tcp = try Configuration.parse(text).sipTCP
        #expect(tcp == Configuration.SIPTCP(maxConnections: 64, maxConnectionsPerAddress: 8,
                                            idleTimeoutSeconds: 3, headerTimeoutSeconds: 2))
    }

    @Test(arguments: [("max_connections", "0"), ("max_connections", "2000"), ("idle_timeout_seconds", "0"),
                      ("header_timeout_seconds", "61"), ("max_connections_per_address", "many")])
    func aValueOutOfRangeIsRefusedWithItsKey(key: String, value: String) {
        do {
            _ = try Configuration.parse(minimalConfiguration + "\nsip_tcp:\n  \(key): \(value)")
            Issue.record("\(key): \(value) was accepted")
        } catch {
            #expect(error.key == "sip_tcp.\(key)")
        }
    }
}
