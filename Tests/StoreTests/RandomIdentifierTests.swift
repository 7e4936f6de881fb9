import Foundation
import Store
import Testing

/// Identifiers for call-log rows, callback requests and health reports (issue 15, 3: without
/// a free descriptor Foundation's `UUID()` gave the same all-zero UUID every time).
struct RandomIdentifierTests {
    /// Fixed bytes in, the RFC 9562 layout out: version 4 in the 7th byte's high nibble, the
    /// variant bits 10 in the 9th byte, every other bit from the generator in order.
    @Test func theGeneratorsBytesBecomeAVersion4UUID() {
        struct Fixed: RandomNumberGenerator {
            var words: [UInt64]
            mutating func next() -> UInt64 { words.removeFirst() }
        }
        var ones = Fixed(words: [.max, .max])
        #expect(RandomIdentifier.uuid(using: &ones).uuidString == "FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF")
        var zeros = Fixed(words: [0, 0])
        #expect(RandomIdentifier.uuid(using: &zeros).uuidString == "00000000-0000-4000-8000-000000000000")
        var counting = Fixed(words: [0x0011_2233_4455_6677, 0x8899_AABB_CCDD_EEFF])
        #expect(RandomIdentifier.uuid(using: &counting).uuidString == "00112233-4455-4677-8899-AABBCCDDEEFF")
    }

    /// From the system's generator: lower-case, version 4 and all different.
    @Test func freshIdentifiersAreDistinctVersion4Strings() throws {
        let ids = (0..<10_000).map { _ in RandomIdentifier.string() }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(100) {
            #expect(id == id.lowercased())
            let uuid = try #require(UUID(uuidString: id))
            #expect(uuid.uuid.6 >> 4 == 4, "\(id)")
            #expect(uuid.uuid.8 >> 6 == 0b10, "\(id)")
        }
    }
}
