internal import NIOCore

/// Sending RFC 3428 MESSAGE requests: the tablet's callback requests to the centrale.
extension UserAgent {
    /// Sends a MESSAGE to `uri` and returns the final status, or nil when nothing answered
    /// within `timeout` (or the URI is unusable). It goes the way an INVITE does: over the
    /// first registered flow to an edge proxy, with a Route, and `From` is the tablet's
    /// address of record (`sip:user@domain`) when it registers. A 401/407 is answered once
    /// with the registration's credentials.
    public func sendMessage(to uri: String, contentType: String, body: [UInt8], timeout: Duration) async -> Int? {
        guard !stopped, let target = SIPNameAddress(uri), let destination = outboundDestination() ?? resolve(target.uri)
        else { return nil }
        let from = configuration.registration.map { "sip:\(configuration.user)@\($0.domain)" } ?? localURI
        var headers = SIPHeaders()
        headers.add("Max-Forwards", "70")
        headers.add("From", "<\(from)>;tag=\(randomToken(8))")
        headers.add("To", "<\(target.uri)>")
        headers.add("Call-ID", newCallID(toward: destination))
        if let route = outboundRoute() { headers.add("Route", route) }
        headers.add("User-Agent", configuration.userAgentHeader)
        headers.add("Content-Type", contentType)
        var request = SIPRequest(method: .message, uri: target.uri, headers: headers)
        request.body = body
        var status = await transact(request, cseq: 1, to: destination, timeout: timeout)
        if let challenged = status?.response, challenged.status == 401 || challenged.status == 407,
           let authorized = authorize(request, challenge: challenged) {
            status = await transact(authorized, cseq: 2, to: destination, timeout: timeout)
        }
        return status?.response.status
    }

    private struct Answer: Sendable { var response: SIPResponse }

    private func transact(_ request: SIPRequest, cseq: Int, to destination: SocketAddress, timeout: Duration) async
        -> Answer?
    {
        var request = request
        let branch = newBranch()
        addressPeer = destination
        request.headers.remove("Via")
        request.headers.remove("CSeq")
        request.headers.prepend("Via", via(branch))
        request.headers.add("CSeq", "\(cseq) MESSAGE")
        let sent = request
        return await withCheckedContinuation { (continuation: CheckedContinuation<Answer?, Never>) in
            startClientTransaction(sent, branch: branch, to: destination, timeout: timeout) { response in
                continuation.resume(returning: response.map(Answer.init))
            }
        }
    }

    /// The request again with digest credentials for `challenge`, or nil if we have none
    /// that fit (no registration, no password, an algorithm we cannot compute).
    private func authorize(_ request: SIPRequest, challenge response: SIPResponse) -> SIPRequest? {
        guard let registration = configuration.registration, let password = readPassword() else { return nil }
        let header = response.status == 401 ? "WWW-Authenticate" : "Proxy-Authenticate"
        guard let challenge = DigestChallenge.best(of: response.headers.values(header)),
              let credentials = try? challenge.authorization(
                  method: "MESSAGE", uri: request.uri, username: registration.authUser, password: password,
                  cnonce: randomToken(8), nonceCount: 1)
        else {
            logger.notice("MESSAGE challenged, but no usable credentials")
            return nil
        }
        var request = request
        request.headers.add(response.status == 401 ? "Authorization" : "Proxy-Authorization", credentials)
        return request
    }
}
