/// The smallest configuration the loader accepts: one account, UDP, no SRTP, one post. Tests
/// append lines to it (its last line is the post's `uri:`, inside `centrale:`) or replace some.
let minimalConfiguration = """
    account:
      user: tablet-1
      domain: example.test
    transport: udp
    srtp: off
    centrale:
      posts:
        - id: p1
          uri: sip:post1@127.0.0.1:5070
    """
