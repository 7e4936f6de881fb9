public import Foundation

/// Row and report identifiers: RFC 9562 version 4 UUIDs from `SystemRandomNumberGenerator`,
/// which reads getrandom(2) and needs no file descriptor. Foundation's `UUID()` on Linux opens
/// /dev/urandom and, with no descriptor free, returned `00000000-0000-4000-8000-000000000000`
/// every time (issue 15, 3): call-log and callback rows then failed on their UNIQUE keys. The
/// standard library traps rather than return weak bytes, so this fails loudly, never quietly.
public enum RandomIdentifier {
    /// A version 4, variant 1 UUID from `generator`'s bytes.
    public static func uuid(using generator: inout some RandomNumberGenerator) -> UUID {
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<8 {
            bytes[index] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(index)))
            bytes[8 + index] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(index)))
        }
        bytes[6] = bytes[6] & 0x0F | 0x40  // version 4
        bytes[8] = bytes[8] & 0x3F | 0x80  // variant 10xx
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    /// A fresh random UUID.
    public static func uuid() -> UUID {
        var generator = SystemRandomNumberGenerator()
        return uuid(using: &generator)
    }

    /// A fresh random UUID as the store writes it: lower-case, with hyphens.
    public static func string() -> String {
        uuid().uuidString.lowercased()
    }
}
