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

@Suite struct HealthConfigurationTests {
    @Test func healthKeysHaveDefaultsAndAreRead() throws {
        let base = minimalConfiguration + "\nprovisioning:\n  url: https://127.0.0.1:8443/t/1/config\n  token_file: /tmp/token\n"
        let plain = try #require(try Configuration.parse(base).provisioning)
        #expect(plain.healthIntervalSeconds == 300 && plain.healthURL == nil)
        let set = try #require(try Configuration.parse(
            base + "  health_interval_seconds: 60\n  health_url: https://fleet.zorg.example/t/1/health\n").provisioning)
        #expect(set.healthIntervalSeconds == 60)
        #expect(set.healthURL == "https://fleet.zorg.example/t/1/health")
    }

    @Test(arguments: [
        ("health_interval_seconds: 1", "provisioning.health_interval_seconds", "out of range"),
        ("health_url: http://fleet.zorg.example/h", "provisioning.health_url", "https"),
    ])
    func badHealthValuesNameTheKey(_ line: String, _ key: String, _ message: String) {
        do {
            _ = try Configuration.parse(minimalConfiguration
                + "\nprovisioning:\n  url: https://127.0.0.1:8443/config\n  token_file: /t\n  " + line + "\n")
            Issue.record("accepted: \(line)")
        } catch {
            #expect(error.key == key, "\(error)")
            #expect(error.message.contains(message), "\(error)")
        }
    }
}
