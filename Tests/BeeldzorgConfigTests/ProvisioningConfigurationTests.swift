import BeeldzorgConfig
import Foundation
import Testing

@Suite struct ProvisioningConfigurationTests {
    @Test func absentSectionMeansNoServer() throws {
        #expect(try Configuration.parse(minimalConfiguration).provisioning == nil)
    }

    @Test func fullSectionIsRead() throws {
        let config = try Configuration.parse(minimalConfiguration + """

            provisioning:
              url: https://beheer.zorg.example/api/v1/tablets/tablet-0042/config
              token_file: /etc/beeldzorg/credentials/provisioning-token
              ca_file: /etc/beeldzorg/provisioning-ca.pem
              interval_minutes: 15
              upload_url: https://upload.zorg.example/api/v1/tablets/tablet-0042
            """)
        let section = try #require(config.provisioning)
        #expect(section.url == "https://beheer.zorg.example/api/v1/tablets/tablet-0042/config")
        #expect(section.tokenFile == "/etc/beeldzorg/credentials/provisioning-token")
        #expect(section.caFile == "/etc/beeldzorg/provisioning-ca.pem")
        #expect(section.intervalMinutes == 15)
        #expect(section.uploadURL == "https://upload.zorg.example/api/v1/tablets/tablet-0042")
    }

    @Test func defaultsForTheOptionalKeys() throws {
        let config = try Configuration.parse(minimalConfiguration + """

            provisioning:
              url: https://127.0.0.1:8443/config
              token_file: /tmp/token
            """)
        let section = try #require(config.provisioning)
        #expect(section.intervalMinutes == 60)
        #expect(section.caFile == nil && section.uploadURL == nil)
    }

    @Test(arguments: [
        ("url: http://beheer.zorg.example/config\n  token_file: /t", "provisioning.url", "https"),
        ("url: https://beheer.zorg.example/config\n  token_file: /t\n  upload_url: ftp://x/y", "provisioning.upload_url", "https"),
        ("url: https://beheer.zorg.example/config", "provisioning.token_file", "required"),
        ("token_file: /t", "provisioning.url", "required"),
        ("url: https://beheer.zorg.example/config\n  token_file: /t\n  interval_minutes: 0", "provisioning.interval_minutes", "out of range"),
        ("url: https://beheer.zorg.example/config\n  token_file: /t\n  interval_minutes: 1441", "provisioning.interval_minutes", "out of range"),
        ("url: https://beheer.zorg.example/config\n  token_file: /t\n  token: secret", "provisioning.token", "unknown key"),
    ])
    func badValuesAreRefusedNamingTheKey(_ lines: String, _ key: String, _ message: String) {
        do {
            _ = try Configuration.parse(minimalConfiguration + "\nprovisioning:\n  " + lines + "\n")
            Issue.record("accepted: \(lines)")
        } catch {
            #expect(error.key == key, "\(error)")
            #expect(error.message.contains(message), "\(error)")
            #expect(error.line != nil)
        }
    }
}
