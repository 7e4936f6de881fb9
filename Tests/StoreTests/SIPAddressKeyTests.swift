import Testing
import Store

@Suite("SIP address matching key")
struct SIPAddressKeyTests {
    @Test(arguments: [
        ("sip:jan@example.org", "jan@example.org"),
        ("sips:jan@example.org", "jan@example.org"),
        ("SIP:jan@EXAMPLE.org", "jan@example.org"),
        ("sip:jan@example.org:5061;transport=tls", "jan@example.org"),
        ("sip:jan@example.org?subject=hi", "jan@example.org"),
        ("\"Jan de Vries\" <sip:jan@Example.ORG;transport=tcp>;tag=abc", "jan@example.org"),
        ("<sip:jan@example.org>", "jan@example.org"),
        ("  sip:jan@example.org  ", "jan@example.org"),
        ("jan@example.org", "jan@example.org"),
        ("sip:jan:secret@example.org", "jan@example.org"),
        ("sip:j%61n@example.org", "jan@example.org"),
        ("sip:Jan@example.org", "Jan@example.org"),  // user part is case-sensitive
        ("sip:example.org", "example.org"),
        ("sip:alice@[2001:db8::1]:5060", "alice@[2001:db8::1]"),
        ("sip:jan@example.org.", "jan@example.org"),
    ])
    func normalises(_ input: String, _ expected: String) {
        #expect(SIPAddressKey.normalise(input) == expected)
    }

    @Test(arguments: ["", "sip:", "sip:jan@", "\"Jan\" <sip:jan@example.org", "tel:+31201234567", "<>"])
    func rejects(_ input: String) {
        #expect(SIPAddressKey.normalise(input) == nil)
    }
}
